"""One closed bar of every instrument of one interval: a (instruments × features) matrix with names."""

from __future__ import annotations

import numpy as np

from processors.features.errors import UnknownFeatureError
from processors.features.series import INDEX
from topics.records import FeatureBar


class FeatureFrame:
    """``values[i, j]`` is feature ``names[j]`` of ``instruments[i]`` for the bar ending at ``ts_event``."""

    __slots__ = ("instruments", "interval_ns", "names", "ts_event", "values")

    def __init__(self, interval_ns: int, ts_event: int, instruments: list[str], names: tuple[str, ...],
                 values: np.ndarray) -> None:
        self.interval_ns = interval_ns
        self.ts_event = ts_event  # bar end (exclusive), ns
        self.instruments = instruments
        self.names = names
        self.values = values

    def column(self, name: str) -> np.ndarray:
        """One feature for every instrument."""
        try:
            j = self.names.index(name)
        except ValueError:
            raise UnknownFeatureError(name) from None
        return self.values[:, j]

    def row(self, instrument: str) -> dict[str, float]:
        return dict(zip(self.names, self.values[self.instruments.index(instrument)].tolist(), strict=True))

    def bars(self) -> list[FeatureBar]:
        """One :class:`FeatureBar` per instrument; NaN (warming up) becomes None."""
        cells = self.values.astype(object)  # Python floats, and None where NaN: one pass in numpy, not per value
        cells[np.isnan(self.values)] = None
        names = self.names
        return [FeatureBar(instrument=inst, ts_event=self.ts_event, interval_ns=self.interval_ns,
                           values=dict(zip(names, row, strict=True)))
                for inst, row in zip(self.instruments, cells.tolist(), strict=True)]


class BarSeries:
    """The bar-level series (the ``bar`` family, the first columns of its :class:`FeatureFrame`) of one closed bar
    of every instrument of one interval, known before the rest of its features: what the regime signals need."""

    __slots__ = ("instruments", "interval_ns", "series", "ts_event")

    def __init__(self, interval_ns: int, ts_event: int, instruments: list[str], series: np.ndarray) -> None:
        self.interval_ns = interval_ns
        self.ts_event = ts_event  # bar end (exclusive), ns
        self.instruments = instruments
        self.series = series  # (instruments, series)

    def column(self, name: str) -> np.ndarray:
        """One series (``ret``, ``close``, ...) for every instrument."""
        j = INDEX.get(name)
        if j is None:
            raise UnknownFeatureError(name)
        return self.series[:, j]
