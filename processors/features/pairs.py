"""Rolling correlations of pairs of series (autocorrelation, cross-venue lead-lag), from incremental sums.

A pair correlates a(t) = series ``sa`` of the instrument ``ka`` bars ago with b(t) = series ``sb`` of the same
instrument, or of its peer (another venue of the same asset), ``kb`` bars ago, over the last ``w`` bars. The values
are read back from the :class:`~processors.features.rolling.SeriesRing`, so pairs need no history of their own.
Same accuracy rules as :class:`~processors.features.rolling.RollingMoments`: exact recomputation per slot every
``resync_every`` bars, and a correlation of 0 (documented) when either side is constant over the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from processors.features.rolling import ERR_ULP, F64, RTOL_EXACT, SeriesRing, changed, window_mask, window_runs
from processors.features.state import SlotArrays


class PairSpec(NamedTuple):
    sa: int  # series index of a
    ka: int  # lag of a, bars (>= 0)
    sb: int  # series index of b
    kb: int  # lag of b, bars (>= 0)
    peer: bool  # b is read from the instrument's peer


class RollingPairs(SlotArrays):
    """Sums Sa, Sb, Saa, Sbb, Sab of each pair over each window; :meth:`corr` gives Pearson correlations."""

    def __init__(self, capacity: int, pairs: Sequence[PairSpec], windows: Sequence[int], resync_every: int) -> None:
        super().__init__(capacity)
        self.windows = np.asarray(windows, dtype=np.int64)
        self.resync_every = resync_every
        self.sa = np.array([p.sa for p in pairs], dtype=np.int64)
        self.ka = np.array([p.ka for p in pairs], dtype=np.int64)
        self.sb = np.array([p.sb for p in pairs], dtype=np.int64)
        self.kb = np.array([p.kb for p in pairs], dtype=np.int64)
        self.peer = np.array([p.peer for p in pairs], dtype=bool)
        nw, npairs = len(windows), len(pairs)
        self.sums: np.ndarray = self._slot_array("sums", (nw, 5, npairs), F64, 0.0)
        self.nvalid: np.ndarray = self._slot_array("nvalid", (nw, npairs), np.int64, 0)
        self.chg_a: np.ndarray = self._slot_array("chg_a", (nw, npairs), np.int64, 0)
        self.chg_b: np.ndarray = self._slot_array("chg_b", (nw, npairs), np.int64, 0)
        self.bound: np.ndarray = self._slot_array("bound", (nw, 5, npairs), F64, 0.0)  # Σ|terms| since exact

    def _rows_b(self, rows: np.ndarray, peers: np.ndarray) -> np.ndarray:
        """(rows, pairs): the slot b is read from."""
        return np.where(self.peer[None, :], peers[rows][:, None], rows[:, None])

    def _ab(self, ring: SeriesRing, rows: np.ndarray, rows_b: np.ndarray, back: np.ndarray) -> tuple[np.ndarray, ...]:
        """a and b ``back`` bars before their own lags; ``back`` broadcasts against (rows, k, pairs)."""
        a = ring.gather(rows[:, None, None], back - self.ka, self.sa[None, None, :])
        b = ring.gather(rows_b[:, None, :], back - self.kb, self.sb[None, None, :])
        return a, b

    def update(self, ring: SeriesRing, n: int, t: int, peers: np.ndarray) -> None:
        """Take in bar ``t`` (already in ``ring``); ``peers[slot]`` is the peer slot or -1."""
        rows = np.arange(n)
        rows_b = self._rows_b(rows, peers)
        w = self.windows[None, :, None]
        a_new, b_new = self._ab(ring, rows, rows_b, np.array(t)[None, None, None])
        a_prev, b_prev = self._ab(ring, rows, rows_b, np.array(t - 1)[None, None, None])
        a_old, b_old = self._ab(ring, rows, rows_b, t - w)
        a_nxt, b_nxt = self._ab(ring, rows, rows_b, t - w + 1)
        p_new, p_old = _pair_sums(a_new, b_new), _pair_sums(a_old, b_old)
        self.sums[:n] += p_new - p_old
        self.bound[:n] += np.abs(p_new) + np.abs(p_old)
        self.nvalid[:n] += _both(a_new, b_new) - _both(a_old, b_old)
        self.chg_a[:n] += changed(a_new, a_prev) - changed(a_old, a_nxt)
        self.chg_b[:n] += changed(b_new, b_prev) - changed(b_old, b_nxt)
        due = np.arange(t % self.resync_every, n, self.resync_every)
        if due.size:
            self.recompute(ring, due, t, peers)

    def recompute(self, ring: SeriesRing, rows: np.ndarray, t: int, peers: np.ndarray) -> None:
        """Exact sums of ``rows`` from the ring (also after a slot's peer changed)."""
        rows_b = self._rows_b(rows, peers)
        for i, w in enumerate(self.windows):
            back = (t - np.arange(w)[::-1])[None, :, None]
            a, b = self._ab(ring, rows, rows_b, back)
            terms = _pair_sums(a, b)
            self.sums[rows, i] = terms.sum(axis=1)
            self.bound[rows, i] = np.abs(terms).sum(axis=1)
            self.nvalid[rows, i] = _both(a, b).sum(axis=1)
            self.chg_a[rows, i] = changed(a[:, 1:], a[:, :-1]).sum(axis=1)
            self.chg_b[rows, i] = changed(b[:, 1:], b[:, :-1]).sum(axis=1)

    def corr(self, ring: SeriesRing, n: int, t: int, peers: np.ndarray) -> np.ndarray:
        """Pearson correlation (n, windows, pairs): NaN unless every pair in the window is present, 0 when a side
        is constant over the window. Cells whose rounding-error bound is too large are recomputed exactly."""
        w = self.windows[None, :, None].astype(F64)
        s = self.sums[:n] / w[:, :, None, :]
        ma, mb, eaa, ebb, eab = (s[:, :, j] for j in range(5))
        va, vb, cov = eaa - ma * ma, ebb - mb * mb, eab - ma * mb
        full = self.nvalid[:n] == self.windows[None, :, None]
        const = (self.chg_a[:n] == 0) | (self.chg_b[:n] == 0)
        risky = full & ~const & self._ill_conditioned(va, vb, w, n)
        if np.any(risky):
            self._exact(ring, t, peers, risky, (va, vb, cov))
        flat = const | (va <= 0.0) | (vb <= 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(flat, 0.0, cov / np.sqrt(va * vb))
        return np.where(full, np.clip(r, -1.0, 1.0), np.nan)

    def _ill_conditioned(self, va: np.ndarray, vb: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
        b = self.bound[:n] / w[:, :, None, :]
        ba, bb, baa, bbb, bab = (b[:, :, j] for j in range(5))
        err_a = ERR_ULP * (baa + ba * ba)
        err_b = ERR_ULP * (bbb + bb * bb)
        err_ab = ERR_ULP * (bab + ba * bb)
        va, vb = np.maximum(va, 0.0), np.maximum(vb, 0.0)
        return (err_a > RTOL_EXACT * va) | (err_b > RTOL_EXACT * vb) | (err_ab > RTOL_EXACT * np.sqrt(va * vb))

    def _exact(self, ring: SeriesRing, t: int, peers: np.ndarray, cells: np.ndarray,
               out: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Two-pass variances and covariance of the (slot, window, pair) ``cells``, written into ``out``."""
        va, vb, cov = out
        all_rows, all_wins, all_pairs = np.nonzero(cells)
        for sel, length in window_runs(self.windows, all_wins):
            rows, wins, pairs = all_rows[sel], all_wins[sel], all_pairs[sel]
            back = np.arange(t - length + 1, t + 1)[None, :]
            rows_b = np.where(self.peer[pairs], peers[rows], rows)
            a = ring.gather(rows[:, None], back - self.ka[pairs][:, None], self.sa[pairs][:, None])
            b = ring.gather(rows_b[:, None], back - self.kb[pairs][:, None], self.sb[pairs][:, None])
            w, inside = window_mask(self.windows[wins], length)
            a = np.where(inside, a - a[:, -1:], 0.0)  # exact for neighbouring values: keeps tiny deviations precise
            b = np.where(inside, b - b[:, -1:], 0.0)
            da = np.where(inside, a - (a.sum(axis=1) / w)[:, None], 0.0)
            db = np.where(inside, b - (b.sum(axis=1) / w)[:, None], 0.0)
            va[rows, wins, pairs] = (da * da).sum(axis=1) / w
            vb[rows, wins, pairs] = (db * db).sum(axis=1) / w
            cov[rows, wins, pairs] = (da * db).sum(axis=1) / w

    def reset(self) -> None:
        self.sums.fill(0.0)
        self.nvalid.fill(0)
        self.chg_a.fill(0)
        self.chg_b.fill(0)
        self.bound.fill(0.0)


def _both(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (~np.isnan(a) & ~np.isnan(b)).astype(np.int64)


def _pair_sums(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sa, Sb, Saa, Sbb, Sab terms stacked on axis -2 (zeros where a pair is incomplete)."""
    ok = ~np.isnan(a) & ~np.isnan(b)
    a = np.where(ok, a, 0.0)
    b = np.where(ok, b, 0.0)
    return np.stack([a, b, a * a, b * b, a * b], axis=-2)
