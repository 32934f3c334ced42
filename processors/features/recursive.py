"""Recursive feature families with their own state: EMAs (and crossovers) and Wilder's RSI."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from processors.features.catalog import BarContext, FeatureSpec
from processors.features.series import BPS, INDEX, SERIES
from processors.features.state import SlotArrays

EMA_SERIES = ("mid", "microprice", "vwap", "spread_bps", "imbalance_1", "imbalance_5", "imbalance_10", "ofi",
              "signed_volume", "volume", "trade_imbalance", "ret", "micro_dev_bps", "depth_1", "trade_count")


class EmaFamily(SlotArrays):
    """ema_t = α·x_t + (1 − α)·ema_(t−1), α = 2 / (span + 1), seeded with the first value; missing values are
    skipped (the EMA carries over); NaN until ``span`` values have been seen."""

    name = "ema"

    def __init__(self, capacity: int, spans: Sequence[int]) -> None:
        super().__init__(capacity)
        self.spans = np.asarray(spans, dtype=np.int64)
        self.alpha = 2.0 / (self.spans.astype(np.float64) + 1.0)
        self.cols = np.array([INDEX[s] for s in EMA_SERIES], dtype=np.int64)
        self.ema: np.ndarray = self._slot_array("ema", (len(spans), len(EMA_SERIES)), np.float64, np.nan)
        self.seen: np.ndarray = self._slot_array("seen", (len(EMA_SERIES),), np.int64, 0)
        self.crosses = [(int(spans[i]), int(spans[i + 2])) for i in range(len(spans) - 2)]

    def specs(self) -> list[FeatureSpec]:
        out = []
        for s in EMA_SERIES:
            d = SERIES[INDEX[s]]
            out += [FeatureSpec(f"ema_{s}_{p}", self.name, f"EMA of {s}, α = 2/({p}+1)", d.inputs, p,
                                d.warmup + p - 1) for p in self.spans.tolist()]
        out += [FeatureSpec(f"ema_dev_bps_{p}", self.name, f"(mid / ema_mid_{p} − 1) · 1e4", "BBO/QuoteTick", p,
                            p - 1) for p in self.spans.tolist()]
        out += [FeatureSpec(f"ema_cross_bps_{a}_{b}", self.name, f"(ema_mid_{a} / ema_mid_{b} − 1) · 1e4",
                            "BBO/QuoteTick", b, b - 1) for a, b in self.crosses]
        return out

    def update(self, x: np.ndarray) -> None:
        """Take in one bar of the EMA series ``x`` (n, series)."""
        n = x.shape[0]
        ema, seen = self.ema[:n], self.seen[:n]
        valid = ~np.isnan(x)
        a = self.alpha[None, :, None]
        nxt = np.where(seen[:, None, :] == 0, x[:, None, :], a * x[:, None, :] + (1.0 - a) * ema)
        ema[...] = np.where(valid[:, None, :], nxt, ema)
        seen += valid

    def compute(self, ctx: BarContext) -> np.ndarray:
        self.update(ctx.series[:, self.cols])
        n = ctx.n
        warm = self.seen[:n][:, None, :] >= self.spans[None, :, None]
        ema = np.where(warm, self.ema[:n], np.nan)
        by_series = ema.transpose(0, 2, 1).reshape(n, -1)
        mid = ctx.series[:, INDEX["mid"]][:, None]
        ema_mid = ema[:, :, 0]
        pos = {p: i for i, p in enumerate(self.spans.tolist())}
        cross = [(ema_mid[:, pos[a]] / ema_mid[:, pos[b]] - 1.0) * BPS for a, b in self.crosses]
        return np.concatenate([by_series, (mid / ema_mid - 1.0) * BPS, np.stack(cross, axis=1)], axis=1)

    def reset(self) -> None:
        self.ema.fill(np.nan)
        self.seen.fill(0)


class RsiFamily(SlotArrays):
    """Wilder's RSI of the mid over n bars: the first average gain/loss is the mean of the first n mid changes,
    then avg = (avg·(n − 1) + x) / n; RSI = 100 − 100 / (1 + gain/loss), 100 when loss = 0 < gain, 50 when both 0."""

    name = "rsi"

    def __init__(self, capacity: int, periods: Sequence[int]) -> None:
        super().__init__(capacity)
        self.periods = np.asarray(periods, dtype=np.int64)
        k = len(periods)
        self.gain: np.ndarray = self._slot_array("gain", (k,), np.float64, 0.0)
        self.loss: np.ndarray = self._slot_array("loss", (k,), np.float64, 0.0)
        self.seen: np.ndarray = self._slot_array("seen", (), np.int64, 0)

    def specs(self) -> list[FeatureSpec]:
        return [FeatureSpec(f"rsi_{p}", self.name, self.__doc__ or "", "BBO/QuoteTick", p + 1, p)
                for p in self.periods.tolist()]

    def compute(self, ctx: BarContext) -> np.ndarray:
        n = ctx.n
        mid = INDEX["mid"]
        change = ctx.series[:, mid] - ctx.ring.at(ctx.t - 1, n)[:, mid]
        ok = ~np.isnan(change)
        up = np.where(ok, np.maximum(change, 0.0), 0.0)[:, None]
        down = np.where(ok, np.maximum(-change, 0.0), 0.0)[:, None]
        seen = self.seen[:n] + ok
        self.seen[:n] = seen
        p = self.periods[None, :].astype(np.float64)
        s = seen[:, None]
        seeding = s <= self.periods[None, :]
        upd = ok[:, None]
        gain, loss = self.gain[:n], self.loss[:n]
        g_seed, l_seed = gain + up, loss + down
        g_seed = np.where(s == self.periods[None, :], g_seed / p, g_seed)
        l_seed = np.where(s == self.periods[None, :], l_seed / p, l_seed)
        g_next = np.where(seeding, g_seed, (gain * (p - 1.0) + up) / p)
        l_next = np.where(seeding, l_seed, (loss * (p - 1.0) + down) / p)
        gain[...] = np.where(upd, g_next, gain)
        loss[...] = np.where(upd, l_next, loss)
        with np.errstate(divide="ignore", invalid="ignore"):
            rsi = np.where(loss > 0.0, 100.0 - 100.0 / (1.0 + gain / loss), np.where(gain > 0.0, 100.0, 50.0))
        return np.where(s >= self.periods[None, :], rsi, np.nan)

    def reset(self) -> None:
        self.gain.fill(0.0)
        self.loss.fill(0.0)
        self.seen.fill(0)
