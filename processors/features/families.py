"""The stateless feature families: bar series, rolling moments and sums, volatility estimators, window flow,
returns over windows, and rolling correlations (autocorrelation, cross-venue lead-lag)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from processors.features.catalog import BarContext, FeatureSpec
from processors.features.pairs import PairSpec
from processors.features.series import INDEX, SERIES

LEVEL_SERIES = ("mid", "microprice", "wmid_5", "wmid_10", "vwap", "open", "high", "low", "close", "mid_high",
                "mid_low")
ADDITIVE_SERIES = ("ofi", "quote_count", "trade_count", "volume", "buy_volume", "sell_volume", "signed_volume",
                   "notional")
VOL_TERMS = {"cc": "var_cc", "parkinson": "var_parkinson", "gk": "var_gk", "rs": "var_rs"}
MOMENT_FORMULAS = {
    "mean": "Σx / w",
    "std": "√(Σ(x − mean)² / (w − 1))",
    "zscore": "(x_t − mean) / std (0 when the window is constant)",
    "skew": "m3 / m2^1.5, m_k = Σ(x − mean)^k / w (0 when constant)",
    "kurt": "m4 / m2² − 3 (0 when constant)",
    "sum": "Σx over the window",
}


def moment_transforms(series: str) -> tuple[str, ...]:
    """Which rolling transforms a series gets: prices get mean/std/z-score, others also skew/kurtosis."""
    if series in VOL_TERMS.values():
        return ()
    base = ("mean", "std", "zscore")
    if series in LEVEL_SERIES:
        return base
    extra = ("sum",) if series in ADDITIVE_SERIES else ()
    return (*base, "skew", "kurt", *extra)


class BarFamily:
    name = "bar"

    def specs(self) -> list[FeatureSpec]:
        return [FeatureSpec(s.name, self.name, s.formula, s.inputs, 1, s.warmup) for s in SERIES]

    def compute(self, ctx: BarContext) -> np.ndarray:
        return ctx.series


class MomentFamily:
    """Rolling mean, std, z-score, skew, kurtosis and sum of the bar series over each window."""

    name = "rolling"

    def __init__(self, windows: Sequence[int]) -> None:
        self.windows = tuple(windows)
        self.plan: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._specs: list[FeatureSpec] = []
        for tr in MOMENT_FORMULAS:
            wi: list[int] = []
            si: list[int] = []
            for s in SERIES:
                if tr not in moment_transforms(s.name):
                    continue
                for i, w in enumerate(self.windows):
                    wi.append(i)
                    si.append(INDEX[s.name])
                    self._specs.append(FeatureSpec(
                        f"{s.name}_{tr}_{w}", self.name, f"{MOMENT_FORMULAS[tr]}, x = {s.name}", s.inputs, w,
                        s.warmup + w - 1))
            self.plan[tr] = (np.array(wi, dtype=np.int64), np.array(si, dtype=np.int64))

    def specs(self) -> list[FeatureSpec]:
        return self._specs

    def compute(self, ctx: BarContext) -> np.ndarray:
        st = ctx.stats
        arrays = {"mean": st.mean, "std": st.std, "zscore": st.z, "skew": st.skew, "kurt": st.kurt, "sum": st.total}
        return np.concatenate([arrays[tr][:, wi, si] for tr, (wi, si) in self.plan.items()], axis=1)


class VolatilityFamily:
    """Realized variance and volatility over each window by four estimators on mid-price bars."""

    name = "volatility"

    def __init__(self, windows: Sequence[int]) -> None:
        self.windows = tuple(windows)

    def specs(self) -> list[FeatureSpec]:
        out = []
        for est, term in VOL_TERMS.items():
            for w in self.windows:
                out.append(FeatureSpec(f"var_{est}_{w}", self.name, f"Σ {term} over w bars", "BBO/QuoteTick", w, w))
            for w in self.windows:
                out.append(FeatureSpec(f"vol_{est}_{w}", self.name, f"√max(var_{est}_{w}, 0)", "BBO/QuoteTick", w, w))
        return out

    def compute(self, ctx: BarContext) -> np.ndarray:
        cols = []
        for term in VOL_TERMS.values():
            var = ctx.stats.total[:, :, INDEX[term]]
            cols += [var, np.sqrt(np.maximum(var, 0.0))]
        return np.concatenate(cols, axis=1)


class FlowFamily:
    """VWAP and trade imbalance over each window, from the window's sums."""

    name = "flow"

    def __init__(self, windows: Sequence[int]) -> None:
        self.windows = tuple(windows)

    def specs(self) -> list[FeatureSpec]:
        t = "BookTrade/TradeTick"
        return [
            *(FeatureSpec(f"vwap_{w}", self.name, "Σnotional / Σvolume (last trade price without trades)", t, w,
                          w - 1) for w in self.windows),
            *(FeatureSpec(f"trade_imbalance_{w}", self.name, "Σsigned_volume / Σvolume (0 without trades)", t, w,
                          w - 1) for w in self.windows),
        ]

    def compute(self, ctx: BarContext) -> np.ndarray:
        tot = ctx.stats.total
        vol, notional, signed = (tot[:, :, INDEX[k]] for k in ("volume", "notional", "signed_volume"))
        last = ctx.series[:, INDEX["close"]][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            vwap = np.where(vol > 0.0, notional / vol, np.where(np.isnan(vol), np.nan, last))
            imb = np.where(vol > 0.0, signed / vol, np.where(np.isnan(vol), np.nan, 0.0))
        return np.concatenate([vwap, imb], axis=1)


class ReturnFamily:
    """Log returns over each window of the mid, the microprice and the last trade price."""

    name = "returns"
    SOURCES = (("ret", "mid", "BBO/QuoteTick"), ("micro_ret", "microprice", "BBO/QuoteTick"),
               ("trade_ret", "close", "BookTrade/TradeTick"))

    def __init__(self, windows: Sequence[int]) -> None:
        self.windows = tuple(windows)

    def specs(self) -> list[FeatureSpec]:
        return [FeatureSpec(f"{name}_{w}", self.name, f"ln({src}_t / {src}_(t−{w}))", inputs, w, w)
                for name, src, inputs in self.SOURCES for w in self.windows]

    def compute(self, ctx: BarContext) -> np.ndarray:
        rows = np.arange(ctx.n)[:, None]
        cols = []
        for _name, src, _inputs in self.SOURCES:
            s = INDEX[src]
            past = ctx.ring.gather(rows, ctx.t - np.array(self.windows)[None, :], np.array(s))
            with np.errstate(divide="ignore", invalid="ignore"):
                cols.append(np.log(ctx.series[:, s][:, None] / past))
        return np.concatenate(cols, axis=1)


ACF_SERIES = ("trade_ret", "ofi", "signed_volume", "imbalance_1", "trade_imbalance", "volume", "spread_bps")


def pair_specs(windows: Sequence[int], acf_lags: Sequence[int], leadlag_lags: Sequence[int]
               ) -> tuple[list[PairSpec], list[FeatureSpec], list[tuple[int, int]]]:
    """The pairs to keep sums for, the features they give, and each feature's (window index, pair index)."""
    pairs: list[PairSpec] = []
    specs: list[FeatureSpec] = []
    where: list[tuple[int, int]] = []
    ret = INDEX["ret"]
    acf = [("ret", k) for k in acf_lags] + [(s, 1) for s in ACF_SERIES]
    for series, k in acf:
        s = INDEX[series]
        pairs.append(PairSpec(s, 0, s, k, False))
        for i, w in enumerate(windows):
            if w > k + 1:
                specs.append(FeatureSpec(f"acf_{series}_{k}_{w}", "autocorrelation",
                                         f"corr(x_t, x_(t−{k})) over {w} bars, x = {series}; 0 when constant",
                                         SERIES[s].inputs, w + k, SERIES[s].warmup + k + w - 1))
                where.append((i, len(pairs) - 1))
    for k in leadlag_lags:
        pairs.append(PairSpec(ret, max(-k, 0), ret, max(k, 0), True))
        tag = f"p{k}" if k > 0 else (f"m{-k}" if k < 0 else "0")
        for i, w in enumerate(windows):
            if w > 2:
                specs.append(FeatureSpec(
                    f"leadlag_{tag}_{w}", "cross-venue",
                    f"corr(ret_t−{max(-k, 0)}, peer ret_t−{max(k, 0)}) over {w} bars (k > 0: the peer leads)",
                    "mid of two venues", w + abs(k), w + abs(k)))
                where.append((i, len(pairs) - 1))
    return pairs, specs, where


class PairFamily:
    name = "correlation"

    def __init__(self, specs: list[FeatureSpec], where: list[tuple[int, int]]) -> None:
        self._specs = specs
        self.wi = np.array([w for w, _ in where], dtype=np.int64)
        self.pi = np.array([p for _, p in where], dtype=np.int64)

    def specs(self) -> list[FeatureSpec]:
        return self._specs

    def compute(self, ctx: BarContext) -> np.ndarray:
        return ctx.corr[:, self.wi, self.pi]
