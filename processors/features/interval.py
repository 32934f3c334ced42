"""One bar interval's computation: the bar accumulator, the series ring, the rolling state and the families."""

from __future__ import annotations

import logging

import numpy as np

from processors.features.catalog import BarContext, Family, FeatureSpec
from processors.features.config import FeatureConfig
from processors.features.errors import StateError
from processors.features.families import (
    BarFamily,
    FlowFamily,
    MomentFamily,
    PairFamily,
    ReturnFamily,
    VolatilityFamily,
    pair_specs,
)
from processors.features.frame import BarSeries, FeatureFrame
from processors.features.inputs import BarAccumulator
from processors.features.pairs import RollingPairs
from processors.features.recursive import EmaFamily, RsiFamily
from processors.features.rolling import RollingMoments, SeriesRing
from processors.features.series import SERIES, compute_series
from processors.features.state import Arrays, SlotArrays

logger = logging.getLogger(__name__)


class IntervalEngine:
    """Bars of one length: :meth:`close` turns the open bar into a :class:`FeatureFrame` for every instrument."""

    def __init__(self, interval_ns: int, config: FeatureConfig, capacity: int) -> None:
        self.interval_ns = interval_ns
        self.config = config
        self.acc = BarAccumulator()
        self.t = 0  # bars closed so far
        self.bar_end: int | None = None  # end (exclusive) of the open bar, ns; None until the first advance
        width, windows, resync = len(SERIES), config.windows, config.resync_every
        self.ring = SeriesRing(capacity, width, config.history)
        self.moments = RollingMoments(capacity, width, windows, resync)
        pairs, pspecs, where = pair_specs(windows, config.acf_lags, config.leadlag_lags)
        self.pairs = RollingPairs(capacity, pairs, windows, resync)
        self.ema = EmaFamily(capacity, config.ema_spans)
        self.rsi = RsiFamily(capacity, windows)
        self.families: list[Family] = [
            BarFamily(), MomentFamily(windows), VolatilityFamily(windows), FlowFamily(windows),
            ReturnFamily(windows), self.ema, self.rsi, PairFamily(pspecs, where),
        ]
        self.specs: list[FeatureSpec] = [s for f in self.families for s in f.specs()]
        self.names: tuple[str, ...] = tuple(s.name for s in self.specs)
        self.closing: tuple[int, BarSeries, np.ndarray] | None = None  # bar counter, its series, the peers
        self.done: list[FeatureFrame] = []  # settled frames not taken yet

    @property
    def stateful(self) -> dict[str, SlotArrays]:
        return {"ring.": self.ring, "mom.": self.moments, "pairs.": self.pairs, "ema.": self.ema, "rsi.": self.rsi}

    def grow(self, capacity: int) -> None:
        for part in self.stateful.values():
            part.grow(capacity)

    def close(self, quotes: dict[str, np.ndarray], instruments: list[str], peers: np.ndarray) -> BarSeries:
        """Close the open bar (ending at ``bar_end``) for the first ``len(instruments)`` slots: its bar series,
        pushed into the ring. The rest of its features are computed by :meth:`settle` (the next close, a restart,
        or the caller's :meth:`finish`, whichever comes first), from the same state: between the two only the
        accumulator of the next bar changes, which the features do not read."""
        assert self.bar_end is not None
        self.settle()
        n, t = len(instruments), self.t
        series = compute_series(quotes, self.acc.take(n), self.ring.at(t - 1, n), peers[:n])
        self.ring.push(t, series)
        bar = BarSeries(self.interval_ns, self.bar_end, list(instruments), series)
        self.closing = (t, bar, peers)
        self.t += 1
        self.bar_end += self.interval_ns
        return bar

    @property
    def unfinished(self) -> bool:
        """Closed bars whose features are not taken yet (computed or not)."""
        return self.closing is not None or bool(self.done)

    def settle(self) -> None:
        """Compute every feature of the bar :meth:`close` closed last, keeping the frame until :meth:`finish`."""
        if self.closing is None:
            return
        t, bar, peers = self.closing
        self.closing = None
        n = len(bar.instruments)
        self.moments.update(self.ring, n, t)
        self.pairs.update(self.ring, n, t, peers)
        stats = self.moments.stats(self.ring, n, t)
        corr = self.pairs.corr(self.ring, n, t, peers)
        ctx = BarContext(n, t, self.ring, bar.series, stats, corr, peers[:n])
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.concatenate([f.compute(ctx) for f in self.families], axis=1)
        self.done.append(FeatureFrame(self.interval_ns, bar.ts_event, bar.instruments, self.names, values))

    def finish(self) -> list[FeatureFrame]:
        """The frames of the bars closed since the last call, oldest first."""
        self.settle()
        out, self.done = self.done, []
        return out

    def restart(self, bar_end: int) -> None:
        """Forget every rolling state (after a gap longer than ``max_gap_bars``); the next bar ends at ``bar_end``."""
        self.settle()
        logger.warning("features %d ns: gap of %d bars, restarting the warm-up",
                       self.interval_ns, (bar_end - (self.bar_end or bar_end)) // self.interval_ns)
        self.ring.clear()
        self.moments.reset()
        self.pairs.reset()
        self.ema.reset()
        self.rsi.reset()
        self.acc.take(0)
        self.bar_end = bar_end

    def recompute_pairs(self, rows: np.ndarray, peers: np.ndarray) -> None:
        """Exact pair sums for ``rows`` whose peer changed."""
        self.pairs.recompute(self.ring, rows, self.t - 1, peers)

    def state(self, prefix: str, n: int) -> Arrays:
        """The arrays of the first ``n`` slots (the unused capacity is not saved)."""
        if self.unfinished:
            raise StateError(f"the {self.interval_ns} ns bars have closed bars whose features are not taken: "
                             "call finish() before checkpointing")
        out: Arrays = {f"{prefix}acc.{k}": v for k, v in self.acc.arrays().items()}
        for name, part in self.stateful.items():
            out.update({k: v[:n] for k, v in part.state(prefix + name).items()})
        return out

    def load(self, arrays: Arrays, prefix: str, capacity: int) -> None:
        self.acc.load({k[len(prefix) + 4:]: v for k, v in arrays.items() if k.startswith(f"{prefix}acc.")})
        for name, part in self.stateful.items():
            part.load(arrays, prefix + name)
            part.grow(capacity)
