"""Rolling statistics over bars, for all instruments at once, from incremental sums.

Every array has the instrument slot as first axis, so one numpy operation updates every instrument. Each bar adds
the new values to running sums and subtracts the values leaving each window (read back from a :class:`SeriesRing`
of the last bars). To keep the sums accurate:

- moments are summed on values shifted by a per-instrument centre (so that squares do not swamp variances);
- each instrument's sums are recomputed exactly from the ring once every ``resync_every`` bars (staggered by slot,
  so every bar recomputes a few instruments), which bounds rounding drift and re-centres the shift;
- a window whose values are all equal is detected exactly (an integer count of changes inside the window), and
  then has variance 0, not rounding noise.

A window is *full* when all its values are present (not NaN); statistics of windows that are not full are NaN.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from processors.features.state import SlotArrays

F64 = np.float64
POWERS = 4
ERR_ULP = 1e-15  # rounding error of a running sum, relative to the Σ|terms| that went through it (generous)
ONE_RUN_MAX = 50_000  # cells x bars up to which an exact recompute of several windows is one masked pass
RTOL_EXACT = 1e-11  # central moments whose error bound is larger than this (relative) are recomputed exactly


class SeriesRing(SlotArrays):
    """The last ``depth`` bar values of ``width`` series per instrument; NaN where a value is missing."""

    def __init__(self, capacity: int, width: int, depth: int) -> None:
        super().__init__(capacity)
        self.depth = depth
        self.width = width
        self.values: np.ndarray = self._slot_array("values", (depth, width), F64, np.nan)

    def push(self, t: int, x: np.ndarray) -> None:
        """Store bar ``t``'s values ``x`` (n, width) for the first n slots; later slots get NaN."""
        n = x.shape[0]
        col = self.values[:, t % self.depth]
        col[:n] = x
        col[n:] = np.nan

    def at(self, t: int, n: int) -> np.ndarray:
        """Bar ``t``'s values (n, width); NaN before the first bar."""
        if t < 0:
            return np.full((n, self.width), np.nan)
        return self.values[:n, t % self.depth]

    def gather(self, rows: np.ndarray, times: np.ndarray, series: np.ndarray) -> np.ndarray:
        """values[rows, times, series] with broadcasting; NaN where a time is negative or a row is -1."""
        pos = np.mod(times, self.depth)
        out = self.values[rows, pos, series]
        bad = (times < 0) | (rows < 0)
        if np.any(bad):
            out = np.where(bad, np.nan, out)
        return out

    def last(self, t: int, rows: np.ndarray, length: int) -> np.ndarray:
        """The ``length`` bars up to ``t`` of ``rows``, oldest first: (rows, length, width)."""
        times = np.arange(t - length + 1, t + 1)
        return self.gather(rows[:, None, None], times[None, :, None], np.arange(self.width)[None, None, :])

    def clear(self) -> None:
        self.values.fill(np.nan)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 where both values are present and differ, else 0 (int64)."""
    return ((a != b) & ~np.isnan(a) & ~np.isnan(b)).astype(np.int64)


class MomentStats:
    """Rolling statistics of every series over every window: arrays (n, windows, series)."""

    def __init__(self, full: np.ndarray, mean: np.ndarray, total: np.ndarray, std: np.ndarray, z: np.ndarray,
                 skew: np.ndarray, kurt: np.ndarray) -> None:
        self.full, self.mean, self.total, self.std, self.z = full, mean, total, std, z
        self.skew, self.kurt = skew, kurt


class RollingMoments(SlotArrays):
    """Sums of powers 1-4 of ``width`` series over each window, per instrument, updated bar by bar."""

    def __init__(self, capacity: int, width: int, windows: Sequence[int], resync_every: int) -> None:
        super().__init__(capacity)
        self.windows = np.asarray(windows, dtype=np.int64)
        self.resync_every = resync_every
        nw = len(windows)
        self.shift: np.ndarray = self._slot_array("shift", (width,), F64, np.nan)
        self.sums: np.ndarray = self._slot_array("sums", (nw, POWERS, width), F64, 0.0)
        self.nvalid: np.ndarray = self._slot_array("nvalid", (nw, width), np.int64, 0)
        self.nchg: np.ndarray = self._slot_array("nchg", (nw, width), np.int64, 0)
        # Σ|term| of the powers 2-4 added or removed since the last exact recomputation: a rounding-error bound
        self.bound: np.ndarray = self._slot_array("bound", (nw, 3, width), F64, 0.0)

    def update(self, ring: SeriesRing, n: int, t: int) -> None:
        """Take in bar ``t`` (already pushed to ``ring``) for the first ``n`` slots."""
        new = ring.at(t, n)
        shift = self.shift[:n]
        first = np.isnan(shift) & ~np.isnan(new)
        shift[first] = new[first]
        w = self.windows
        rows = np.arange(n)[:, None, None]
        series = np.arange(ring.width)[None, None, :]
        old = ring.gather(rows, (t - w)[None, :, None], series)
        old_next = ring.gather(rows, (t - w + 1)[None, :, None], series)
        y_new = np.nan_to_num(new - shift, nan=0.0)
        y_old = np.nan_to_num(old - shift[:, None, :], nan=0.0)
        p_new, p_old = _powers(y_new[:, None, :]), _powers(y_old)
        self.sums[:n] += p_new - p_old
        self.bound[:n] += np.abs(p_new[:, :, 1:]) + np.abs(p_old[:, :, 1:])
        self.nvalid[:n] += (~np.isnan(new)).astype(np.int64)[:, None, :] - (~np.isnan(old)).astype(np.int64)
        self.nchg[:n] += changed(new, ring.at(t - 1, n))[:, None, :] - changed(old, old_next)
        self._resync(ring, n, t)

    def _resync(self, ring: SeriesRing, n: int, t: int) -> None:
        rows = np.arange(t % self.resync_every, n, self.resync_every)
        if rows.size:
            self.recompute(ring, rows, t)

    def recompute(self, ring: SeriesRing, rows: np.ndarray, t: int) -> None:
        """Exact sums of ``rows`` from the ring, re-centred on each row's latest value."""
        hist = ring.last(t, rows, int(self.windows[-1]))
        latest = hist[:, -1, :]
        shift = np.where(np.isnan(latest), self.shift[rows], latest)
        self.shift[rows] = shift
        y = hist - shift[:, None, :]
        valid = ~np.isnan(hist)
        d = changed(hist[:, 1:, :], hist[:, :-1, :])
        for i, w in enumerate(self.windows):
            yw = np.nan_to_num(y[:, -w:, :], nan=0.0)
            self.sums[rows, i] = _powers(yw).sum(axis=1)
            self.bound[rows, i] = np.abs(_powers(yw)[:, :, 1:]).sum(axis=1)
            self.nvalid[rows, i] = valid[:, -w:, :].sum(axis=1)
            self.nchg[rows, i] = d[:, -(w - 1):, :].sum(axis=1) if w > 1 else 0

    def stats(self, ring: SeriesRing, n: int, t: int) -> MomentStats:
        """Mean, sum, sample std, z-score of the latest value, skew and excess kurtosis (population moments).

        Central moments come from the power sums; where the rounding-error bound of that cancellation exceeds
        ``RTOL_EXACT`` of the moment itself (a nearly constant window far from the shift, or after large values
        passed through), the cell is recomputed exactly (two-pass) from the ring.
        """
        w = self.windows[None, :, None].astype(F64)
        s = self.sums[:n] / w[:, :, None, :]
        m1, e2, e3, e4 = s[:, :, 0], s[:, :, 1], s[:, :, 2], s[:, :, 3]
        const = self.nchg[:n] == 0
        full = self.nvalid[:n] == self.windows[None, :, None]
        c2 = e2 - m1 * m1
        c3 = e3 - 3.0 * m1 * e2 + 2.0 * m1**3
        c4 = e4 - 4.0 * m1 * e3 + 6.0 * m1 * m1 * e2 - 3.0 * m1**4
        shift = self.shift[:n][:, None, :]
        latest = ring.at(t, n)[:, None, :]
        dev_t = (latest - shift) - m1  # latest value minus the window mean
        risky = full & ~const & self._ill_conditioned(m1, c2, w, n)
        if np.any(risky):
            m1 = m1.copy()
            _exact_central(ring, t, self.windows, risky, self.shift[:n], (m1, c2, c3, c4, dev_t))
        c2 = np.where(const, 0.0, np.maximum(c2, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            std = np.sqrt(c2 * w / (w - 1.0))
            flat = c2 <= 0.0
            z = np.where(flat, 0.0, dev_t / std)
            skew = np.where(flat, 0.0, c3 / c2**1.5)
            kurt = np.where(flat, 0.0, c4 / (c2 * c2) - 3.0)
        mean = np.where(const, latest, shift + m1)
        total = np.where(const, latest * w, self.sums[:n, :, 0] + w * shift)
        return MomentStats(full, *(np.where(full, a, np.nan) for a in (mean, total, std, z, skew, kurt)))

    def _ill_conditioned(self, m1: np.ndarray, c2: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
        b = self.bound[:n] / w[:, :, None, :]
        b2, b3, b4 = b[:, :, 0], b[:, :, 1], b[:, :, 2]
        a1 = np.abs(m1)
        err2 = ERR_ULP * (b2 + a1 * a1)
        err3 = ERR_ULP * (b3 + 3.0 * a1 * b2 + 3.0 * a1**3)
        err4 = ERR_ULP * (b4 + 4.0 * a1 * b3 + 6.0 * a1 * a1 * b2 + 4.0 * a1**4)
        c2p = np.maximum(c2, 0.0)
        return (err2 > RTOL_EXACT * c2p) | (err3 > RTOL_EXACT * c2p**1.5) | (err4 > RTOL_EXACT * c2p * c2p)

    def reset(self) -> None:
        self.shift.fill(np.nan)
        self.sums.fill(0.0)
        self.nvalid.fill(0)
        self.nchg.fill(0)
        self.bound.fill(0.0)


def _exact_central(ring: SeriesRing, t: int, windows: np.ndarray, cells: np.ndarray, shift: np.ndarray,
                   out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Two-pass shifted mean, central moments 2-4 and latest value's deviation from the mean of the (slot,
    window, series) ``cells`` from the ring, written into ``out`` = (m1, c2, c3, c4, dev_t)."""
    m1, c2, c3, c4, dev_t = out
    all_rows, all_wins, all_series = np.nonzero(cells)
    for sel, length in window_runs(windows, all_wins):
        rows, wins, series = all_rows[sel], all_wins[sel], all_series[sel]
        x = ring.gather(rows[:, None], np.arange(t - length + 1, t + 1)[None, :], series[:, None])
        w, inside = window_mask(windows[wins], length)
        base = x[:, -1]
        y = np.where(inside, x - base[:, None], 0.0)  # exact for neighbouring values: keeps tiny deviations precise
        mean = y.sum(axis=1) / w
        d = np.where(inside, y - mean[:, None], 0.0)
        d2 = d * d
        m1[rows, wins, series] = (base - shift[rows, series]) + mean
        dev_t[rows, wins, series] = d[:, -1]
        c2[rows, wins, series] = d2.sum(axis=1) / w
        c3[rows, wins, series] = (d2 * d).sum(axis=1) / w
        c4[rows, wins, series] = (d2 * d2).sum(axis=1) / w


def window_runs(windows: np.ndarray, wins: np.ndarray) -> Iterator[tuple[np.ndarray | slice, int]]:
    """How to recompute cells of these window indices: (which cells, bars to read) runs. Few cells go in one run
    over the longest window (one set of numpy calls; each cell masks the bars before its own window); many go in
    one run per window, each reading only its own bars."""
    if wins.size == 0:
        return
    longest = int(windows.max())
    if wins.size * longest <= ONE_RUN_MAX:
        yield slice(None), longest
        return
    for i, w in enumerate(windows.tolist()):
        sel = np.flatnonzero(wins == i)
        if sel.size:
            yield sel, w


def window_mask(windows: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """For cells with these window lengths, read over the last ``length`` bars: each length as float, and which
    of those bars are inside the cell's own window (its last ``window`` ones)."""
    inside = np.arange(length)[None, :] >= (length - windows)[:, None]
    return windows.astype(F64), inside


def _powers(y: np.ndarray) -> np.ndarray:
    """y, y², y³, y⁴ stacked on a new axis just before the last one."""
    y2 = y * y
    return np.stack([y, y2, y2 * y, y2 * y2], axis=-2)
