"""Feature specs (name, formula, inputs, window, warm-up) and the context a family computes a bar from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import msgspec
import numpy as np

from processors.features.rolling import MomentStats, SeriesRing


class FeatureSpec(msgspec.Struct, frozen=True):
    """One named feature: what it is and when it becomes valid."""

    name: str
    family: str
    formula: str
    inputs: str
    window: int  # bars the feature looks at (1: the bar itself)
    warmup: int  # bars of NaN after the instrument's first input (quote or trade)


@dataclass
class BarContext:
    """Everything the families read to compute one bar of features for the first ``n`` slots."""

    n: int
    t: int  # bar counter of this interval
    ring: SeriesRing
    series: np.ndarray  # (n, series): this bar's bar-level series
    stats: MomentStats  # rolling moments (n, windows, series)
    corr: np.ndarray  # rolling pair correlations (n, windows, pairs)
    peers: np.ndarray  # (n,) peer slot or -1


class Family(Protocol):
    """A group of features computed together: ``specs()`` names the columns ``compute`` returns, in order."""

    name: str

    def specs(self) -> list[FeatureSpec]: ...

    def compute(self, ctx: BarContext) -> np.ndarray: ...
