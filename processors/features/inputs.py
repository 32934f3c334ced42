"""Per-event accumulation of what each instrument's bar needs, then one numpy snapshot per bar close.

Events arrive one at a time, so this is the only per-event Python in the engine: a few list writes per event.
:class:`Quotes` holds what carries over from bar to bar (last L1 quote, last depth, last trade price);
:class:`BarAccumulator` holds one interval's sums for the open bar and is emptied at each close.
Prices and sizes arrive as 1e-9 fixed-point ints and become floats here (prices × 1e-9; MBO sizes are counts,
exchange sizes are 1e-9 fixed point too).
"""

from __future__ import annotations

import math

import numpy as np

NAN = math.nan
FIX = 1e-9
_QUOTE_FIELDS = ("bid_px", "bid_sz", "ask_px", "ask_sz", "last_px")
_DEPTH_FIELDS = ("dbid5", "dask5", "nbid5", "nask5", "dbid10", "dask10", "nbid10", "nask10")
_BAR_SUMS = ("ofi", "quotes", "trades", "volume", "buy", "sell", "notional")
_BAR_EXTREMES = ("mid_hi", "mid_lo", "t_open", "t_high", "t_low")


def cks_ofi(bp0: float, bq0: float, ap0: float, aq0: float, bp: float, bq: float, ap: float, aq: float) -> float:
    """Cont–Kukanov–Stoikov order-flow contribution of one L1 change (0 when either quote lacks a side)."""
    if not (bp0 == bp0 and ap0 == ap0 and bp == bp and ap == ap):  # any NaN
        return 0.0
    e = 0.0
    if bp >= bp0:
        e += bq
    if bp <= bp0:
        e -= bq0
    if ap <= ap0:
        e -= aq
    if ap >= ap0:
        e += aq0
    return e


def depth_sums(levels: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """(size of the best 5, notional of the best 5, size of the best 10, notional of the best 10)."""
    d5 = n5 = d10 = n10 = 0.0
    for i, (px, sz) in enumerate(levels[:10]):
        d10 += sz
        n10 += px * sz
        if i < 5:
            d5 += sz
            n5 += px * sz
    return d5, n5, d10, n10


class Quotes:
    """What carries over between bars, per slot: last L1 quote, last MBP-10 depth sums, last trade price."""

    def __init__(self) -> None:
        self.cols: dict[str, list[float]] = {f: [] for f in (*_QUOTE_FIELDS, *_DEPTH_FIELDS)}

    def add_slot(self) -> None:
        for col in self.cols.values():
            col.append(NAN)

    def arrays(self, n: int) -> dict[str, np.ndarray]:
        return {k: np.array(v[:n], dtype=np.float64) for k, v in self.cols.items()}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.cols = {k: arrays[k].tolist() for k in self.cols}


class BarAccumulator:
    """One interval's sums and extremes for the open bar, per slot; :meth:`take` empties it."""

    def __init__(self) -> None:
        self.cols: dict[str, list[float]] = {f: [] for f in (*_BAR_SUMS, *_BAR_EXTREMES)}

    def add_slot(self) -> None:
        for f in _BAR_SUMS:
            self.cols[f].append(0.0)
        for f in _BAR_EXTREMES:
            self.cols[f].append(NAN)

    def take(self, n: int) -> dict[str, np.ndarray]:
        """The open bar's arrays for the first ``n`` slots; the accumulator starts the next bar empty."""
        out = {k: np.array(v[:n], dtype=np.float64) for k, v in self.cols.items()}
        size = len(self.cols["ofi"])
        for f in _BAR_SUMS:
            self.cols[f] = [0.0] * size
        for f in _BAR_EXTREMES:
            self.cols[f] = [NAN] * size
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.array(v, dtype=np.float64) for k, v in self.cols.items()}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.cols = {k: arrays[k].tolist() for k in self.cols}


class EventSink:
    """Routes normalized events of a slot into the shared :class:`Quotes` and every interval's accumulator."""

    def __init__(self, quotes: Quotes, bars: list[BarAccumulator]) -> None:
        self.quotes = quotes
        self.bars = bars

    def quote(self, slot: int, bp: float, bq: float, ap: float, aq: float) -> None:
        q = self.quotes.cols
        e = cks_ofi(q["bid_px"][slot], q["bid_sz"][slot], q["ask_px"][slot], q["ask_sz"][slot], bp, bq, ap, aq)
        q["bid_px"][slot], q["bid_sz"][slot], q["ask_px"][slot], q["ask_sz"][slot] = bp, bq, ap, aq
        mid = (bp + ap) * 0.5
        for acc in self.bars:
            c = acc.cols
            c["ofi"][slot] += e
            c["quotes"][slot] += 1.0
            if mid == mid:
                if not c["mid_hi"][slot] >= mid:
                    c["mid_hi"][slot] = mid
                if not c["mid_lo"][slot] <= mid:
                    c["mid_lo"][slot] = mid

    def depth(self, slot: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> None:
        q = self.quotes.cols
        q["dbid5"][slot], q["nbid5"][slot], q["dbid10"][slot], q["nbid10"][slot] = depth_sums(bids)
        q["dask5"][slot], q["nask5"][slot], q["dask10"][slot], q["nask10"][slot] = depth_sums(asks)

    def trade(self, slot: int, px: float, sz: float, side: str) -> None:
        self.quotes.cols["last_px"][slot] = px
        for acc in self.bars:
            c = acc.cols
            c["trades"][slot] += 1.0
            c["volume"][slot] += sz
            c["notional"][slot] += px * sz
            if side == "B":
                c["buy"][slot] += sz
            elif side == "A":
                c["sell"][slot] += sz
            if c["t_open"][slot] != c["t_open"][slot]:
                c["t_open"][slot] = px
            if not c["t_high"][slot] >= px:
                c["t_high"][slot] = px
            if not c["t_low"][slot] <= px:
                c["t_low"][slot] = px
