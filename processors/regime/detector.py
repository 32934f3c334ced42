"""Regimes per instrument and bar: volatility (two-state Gaussian HMM on log realized volatility, online forward
filter) and trend / mean reversion (variance ratio), each with a probability, and the changes as events.

    det = RegimeDetector(RegimeConfig())
    update = det.update(frame.instruments, frame.ts_event, frame.interval_ns, frame.column("ret"))
    update.signals()   # one RegimeSignal per instrument and kind (once warm)
    update.changes()   # only those whose state differs from the previous bar's
    blob = det.checkpoint(); det2 = RegimeDetector.restore(blob)
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import numpy as np

from processors.regime.errors import ConfigError
from processors.regime.hmm import HmmArrays, HmmParams, filter_step, fit_hmm
from processors.regime.state import pack, unpack
from processors.regime.trend import normal_cdf, variance_ratio
from topics.records import RegimeSignal

logger = logging.getLogger(__name__)

VOL_STATES = ("calm", "turbulent")
TREND_STATES = ("mean-reverting", "trending")
STATE_KIND = "orderflow.regime"
STATE_VERSION = 1


class RegimeConfig(msgspec.Struct, frozen=True, kw_only=True):
    vol_window: int = 10  # returns per realized-volatility observation: o_t = ln(√(mean r²) + vol_floor)
    vol_floor: float = 1e-7  # keeps ln finite for bars without any move
    fit_bars: int = 600  # observations an instrument collects before its HMM is fitted (unless vol_params)
    fit_iterations: int = 50
    min_variance: float = 0.05  # per-state variance floor of the log-volatility observations
    vol_params: HmmParams | None = None  # fitted offline (fit_hmm): used for every instrument, no warm-up fit
    vr_window: int = 100  # returns per variance ratio
    vr_q: int = 4  # horizon of the variance ratio, bars
    confirm: float = 0.8  # probability the other trend state needs before the trend state switches

    def __post_init__(self) -> None:
        if self.vol_window < 2 or self.fit_bars < 10 or self.vr_q < 2 or self.vr_window < 2 * self.vr_q:
            raise ConfigError("need vol_window >= 2, fit_bars >= 10, vr_q >= 2 and vr_window >= 2·vr_q")
        if not 0.5 <= self.confirm < 1.0 or self.vol_floor <= 0.0:
            raise ConfigError("need 0.5 <= confirm < 1 and vol_floor > 0")


class RegimeUpdate:
    """One bar's regimes of ``instruments``: state index (-1 while warming up), its probability, and whether it
    changed since the previous bar."""

    def __init__(self, instruments: list[str], ts_event: int, interval_ns: int, arrays: dict[str, np.ndarray]) -> None:
        self.instruments, self.ts_event, self.interval_ns = instruments, ts_event, interval_ns
        self.vol_state, self.vol_prob, self.vol_changed = arrays["vol_state"], arrays["vol_prob"], arrays["vol_chg"]
        self.trend_state, self.trend_prob = arrays["trend_state"], arrays["trend_prob"]
        self.trend_changed = arrays["trend_chg"]

    def signals(self, only_changes: bool = False) -> list[RegimeSignal]:
        out = []
        for kind, names, state, prob, chg in (
            ("volatility", VOL_STATES, self.vol_state, self.vol_prob, self.vol_changed),
            ("trend", TREND_STATES, self.trend_state, self.trend_prob, self.trend_changed),
        ):
            for i in np.nonzero((state >= 0) & (chg if only_changes else True))[0].tolist():
                out.append(RegimeSignal(
                    instrument=self.instruments[i], ts_event=self.ts_event, interval_ns=self.interval_ns, kind=kind,
                    state=names[state[i]], probability=float(np.clip(prob[i], 0.0, 1.0)), changed=bool(chg[i])))
        return out

    def changes(self) -> list[RegimeSignal]:
        return self.signals(only_changes=True)


class RegimeDetector:
    """Both regimes for every instrument of one bar interval; feed it each closed bar's returns."""

    _ARRAYS = ("ring", "count", "buf", "nobs", "fitted", "means", "variances", "transition", "prob", "vol_state",
               "trend_state")

    def __init__(self, config: RegimeConfig | None = None, capacity: int = 16) -> None:
        self.config = config or RegimeConfig()
        self.slots: dict[str, int] = {}
        self.depth = max(self.config.vol_window, self.config.vr_window)
        self._alloc(max(1, capacity))

    def _alloc(self, cap: int) -> None:
        c = self.config
        self.capacity = cap
        self.ring = np.full((cap, self.depth), np.nan)
        self.count = np.zeros(cap, dtype=np.int64)
        self.buf = np.full((cap, c.fit_bars), np.nan)
        self.nobs = np.zeros(cap, dtype=np.int64)
        self.fitted = np.zeros(cap, dtype=bool)
        self.means = np.zeros((cap, 2))
        self.variances = np.ones((cap, 2))
        self.transition = np.tile(np.eye(2), (cap, 1, 1))
        self.prob = np.full((cap, 2), np.nan)
        self.vol_state = np.full(cap, -1, dtype=np.int64)
        self.trend_state = np.full(cap, -1, dtype=np.int64)
        if c.vol_params is not None:
            given = HmmArrays.of(c.vol_params, cap)
            self.means, self.variances, self.transition = given.means, given.variances, given.transition
            self.prob, self.fitted[:] = given.start, True

    def _rows(self, instruments: list[str]) -> np.ndarray:
        rows = []
        for name in instruments:
            s = self.slots.get(name)
            if s is None:
                s = self.slots[name] = len(self.slots)
                if s >= self.capacity:
                    self._grow(2 * self.capacity)
            rows.append(s)
        return np.array(rows, dtype=np.int64)

    def _grow(self, cap: int) -> None:
        old = {k: getattr(self, k) for k in self._ARRAYS}
        self._alloc(cap)
        for k, a in old.items():
            getattr(self, k)[: a.shape[0]] = a

    def update(self, instruments: list[str], ts_event: int, interval_ns: int, returns: np.ndarray) -> RegimeUpdate:
        """Take in one bar's log returns (NaN: none yet) of ``instruments``; the regimes at the bar's close."""
        rows = self._rows(instruments)
        ok = ~np.isnan(returns)
        r_rows = rows[ok]
        self.ring[r_rows, self.count[r_rows] % self.depth] = returns[ok]
        self.count[r_rows] += 1
        prev_vol, prev_trend = self.vol_state[rows].copy(), self.trend_state[rows].copy()
        self._volatility(r_rows)
        trend_prob = self._trend(rows)
        vol_prob = np.where(self.vol_state[rows] >= 0, np.nanmax(self.prob[rows], axis=1, initial=0.0), np.nan)
        arrays = {
            "vol_state": self.vol_state[rows], "vol_prob": vol_prob,
            "vol_chg": (prev_vol >= 0) & (self.vol_state[rows] != prev_vol),
            "trend_state": self.trend_state[rows], "trend_prob": trend_prob,
            "trend_chg": (prev_trend >= 0) & (self.trend_state[rows] != prev_trend),
        }
        return RegimeUpdate(list(instruments), ts_event, interval_ns, arrays)

    def _last(self, rows: np.ndarray, k: int) -> np.ndarray:
        """The last ``k`` returns of each row, oldest first: (rows, k)."""
        back = np.arange(k)[::-1]
        return self.ring[rows[:, None], (self.count[rows][:, None] - 1 - back[None, :]) % self.depth]

    def _volatility(self, rows: np.ndarray) -> None:
        c = self.config
        rows = rows[self.count[rows] >= c.vol_window]
        if rows.size == 0:
            return
        r = self._last(rows, c.vol_window)
        obs = np.log(np.sqrt((r * r).mean(axis=1)) + c.vol_floor)
        fitted = self.fitted[rows]
        live, obs_live = rows[fitted], obs[fitted]
        if live.size:
            self._filter(live, obs_live)
        waiting, obs_wait = rows[~fitted], obs[~fitted]
        self.buf[waiting, self.nobs[waiting]] = obs_wait
        self.nobs[waiting] += 1
        ready = waiting[self.nobs[waiting] >= c.fit_bars]
        if ready.size:
            self._fit(ready)

    def _filter(self, rows: np.ndarray, obs: np.ndarray) -> None:
        prob = self.prob[rows]
        start = np.isnan(prob[:, 0])
        prob[start] = 0.5
        self.prob[rows] = filter_step(prob, self.transition[rows], obs, self.means[rows], self.variances[rows])
        self.vol_state[rows] = np.argmax(self.prob[rows], axis=1)

    def _fit(self, rows: np.ndarray) -> None:
        c = self.config
        obs = self.buf[rows].T
        hmm = fit_hmm(obs, c.fit_iterations, c.min_variance)
        self.means[rows], self.variances[rows], self.transition[rows] = hmm.means, hmm.variances, hmm.transition
        prob = hmm.start
        for t in range(obs.shape[0]):
            prob = filter_step(prob, hmm.transition, obs[t], hmm.means, hmm.variances)
        self.prob[rows] = prob
        self.fitted[rows] = True
        self.vol_state[rows] = np.argmax(prob, axis=1)
        logger.info("regime: fitted the volatility HMM of %d instruments", rows.size)

    def _trend(self, rows: np.ndarray) -> np.ndarray:
        """Update the trend states of ``rows``; P(current state) per row (NaN while warming up)."""
        c = self.config
        out = np.full(rows.size, np.nan)
        warm = self.count[rows] >= c.vr_window
        live = rows[warm]
        if live.size == 0:
            return out
        _vr, z = variance_ratio(self._last(live, c.vr_window), c.vr_q)
        p = np.where(np.isnan(z), 0.5, normal_cdf(np.nan_to_num(z)))
        prev = self.trend_state[live]
        state = np.where(prev < 0, (p >= 0.5).astype(np.int64), prev)
        state = np.where((state == 1) & (p <= 1.0 - c.confirm), 0, state)
        state = np.where((state == 0) & (p >= c.confirm), 1, state)
        self.trend_state[live] = state
        out[warm] = np.where(state == 1, p, 1.0 - p)
        return out

    def checkpoint(self) -> bytes:
        meta: dict[str, Any] = {"config": msgspec.to_builtins(self.config), "slots": list(self.slots)}
        return pack(STATE_KIND, STATE_VERSION, meta, {k: getattr(self, k) for k in self._ARRAYS})

    @classmethod
    def restore(cls, blob: bytes) -> RegimeDetector:
        meta, arrays = unpack(blob, STATE_KIND, STATE_VERSION)
        det = cls(msgspec.convert(meta["config"], RegimeConfig), capacity=arrays["count"].shape[0])
        det.slots = {name: i for i, name in enumerate(meta["slots"])}
        for k in cls._ARRAYS:
            setattr(det, k, arrays[k])
        return det
