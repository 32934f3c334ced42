"""Slow, direct window features from bar series (numpy over explicit windows, plain loops for recursions),
written from the definitions in docs/features.md, independent of the engine's incremental sums."""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from processors.features import FeatureConfig

Series = dict[str, np.ndarray]


def windows_of(x: np.ndarray, w: int) -> np.ndarray:
    """(T, w): row t is x[t-w+1 .. t], NaN-padded before the start."""
    padded = np.concatenate([np.full(w - 1, np.nan), x])
    return sliding_window_view(padded, w)


def moments(x: np.ndarray, w: int) -> dict[str, np.ndarray]:
    """Two-pass moments in extended precision, relative to the window's last value (a mean of prices near 5,000
    rounds by 1e-12, which a z-score over a window whose standard deviation is 1e-5 would amplify to 1e-7)."""
    win = windows_of(x, w)
    full = ~np.isnan(win).any(axis=1)
    const = full & np.all(win == win[:, -1:], axis=1)
    last = win[:, -1:]
    winl = (win - last).astype(np.longdouble)  # exact: neighbouring values; keeps tiny deviations precise
    xl = (x - last[:, 0]).astype(np.longdouble)
    mean = winl.mean(axis=1)
    dev = winl - mean[:, None]
    m2, m3, m4 = ((dev**k).mean(axis=1) for k in (2, 3, 4))
    with np.errstate(divide="ignore", invalid="ignore"):
        std = np.sqrt(m2 * w / (w - 1))
        out = {
            "mean": np.where(const, x, mean + last[:, 0]), "std": np.where(const, 0.0, std), "sum": win.sum(axis=1),
            "zscore": np.where(const, 0.0, (xl - mean) / std), "skew": np.where(const, 0.0, m3 / m2**1.5),
            "kurt": np.where(const, 0.0, m4 / m2**2 - 3.0),
        }
    return {k: np.where(full, v, np.nan).astype(np.float64) for k, v in out.items()}


def lagged(x: np.ndarray, k: int) -> np.ndarray:
    return np.concatenate([np.full(k, np.nan), x[: len(x) - k]]) if k > 0 else x


def corr(a: np.ndarray, b: np.ndarray, w: int) -> np.ndarray:
    """Pearson correlation of a and b over each window (two-pass); 0 when a side is constant."""
    wa, wb = windows_of(a, w), windows_of(b, w)
    full = ~np.isnan(wa).any(axis=1) & ~np.isnan(wb).any(axis=1)
    const = np.all(wa == wa[:, :1], axis=1) | np.all(wb == wb[:, :1], axis=1)
    wa = (wa - wa[:, -1:]).astype(np.longdouble)
    wb = (wb - wb[:, -1:]).astype(np.longdouble)
    da = wa - wa.mean(axis=1, keepdims=True)
    db = wb - wb.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (da * db).sum(axis=1) / np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
    return np.where(full, np.where(const, 0.0, r), np.nan).astype(np.float64)


def ema(x: np.ndarray, span: int) -> np.ndarray:
    alpha = 2.0 / (span + 1.0)
    out = np.full(len(x), np.nan)
    value, seen = math.nan, 0
    for t, v in enumerate(x):
        if not math.isnan(v):
            value = v if seen == 0 else alpha * v + (1.0 - alpha) * value
            seen += 1
        if seen >= span:
            out[t] = value
    return out


def rsi(mid: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(mid), np.nan)
    gains: list[float] = []
    losses: list[float] = []
    g = lo = 0.0
    for t in range(1, len(mid)):
        d = mid[t] - mid[t - 1]
        if not math.isnan(d):
            up, down = max(d, 0.0), max(-d, 0.0)
            if len(gains) < n:
                gains.append(up)
                losses.append(down)
                if len(gains) == n:
                    g, lo = sum(gains) / n, sum(losses) / n
            else:
                g, lo = (g * (n - 1) + up) / n, (lo * (n - 1) + down) / n
        if len(gains) == n:
            out[t] = 100.0 - 100.0 / (1.0 + g / lo) if lo > 0 else (100.0 if g > 0 else 50.0)
    return out


def reference_features(s: Series, peer: Series | None, cfg: FeatureConfig) -> dict[str, np.ndarray]:
    """Every feature of one instrument by definition; ``peer`` is the other venue's bar series (or None)."""
    out: dict[str, np.ndarray] = dict(s)
    out["basis_bps"] = (s["mid"] - peer["mid"]) / peer["mid"] * 1e4 if peer else np.full(len(s["mid"]), np.nan)
    series = dict(out)
    for name, x in series.items():
        for w in cfg.windows:
            for tr, v in moments(x, w).items():
                out[f"{name}_{tr}_{w}"] = v
    for w in cfg.windows:
        _window_features(out, series, w, peer)
    for p in cfg.ema_spans:
        for name, x in series.items():
            out[f"ema_{name}_{p}"] = ema(x, p)
        out[f"ema_dev_bps_{p}"] = (series["mid"] / out[f"ema_mid_{p}"] - 1.0) * 1e4
    spans = cfg.ema_spans
    for a, b in zip(spans, spans[2:], strict=False):
        out[f"ema_cross_bps_{a}_{b}"] = (out[f"ema_mid_{a}"] / out[f"ema_mid_{b}"] - 1.0) * 1e4
    return out


def _window_features(out: dict[str, np.ndarray], s: Series, w: int, peer: Series | None) -> None:
    for est in ("cc", "parkinson", "gk", "rs"):
        var = windows_of(s[f"var_{est}"], w).sum(axis=1)
        out[f"var_{est}_{w}"] = var
        out[f"vol_{est}_{w}"] = np.sqrt(np.maximum(var, 0.0))
    vol = windows_of(s["volume"], w).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[f"vwap_{w}"] = np.where(vol > 0, windows_of(s["notional"], w).sum(axis=1) / vol, s["close"])
        out[f"trade_imbalance_{w}"] = np.where(vol > 0, windows_of(s["signed_volume"], w).sum(axis=1) / vol, 0.0)
    out[f"vwap_{w}"][np.isnan(vol)] = np.nan
    out[f"trade_imbalance_{w}"][np.isnan(vol)] = np.nan
    for name, src in (("ret", "mid"), ("micro_ret", "microprice"), ("trade_ret", "close")):
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"{name}_{w}"] = np.log(s[src] / lagged(s[src], w))
    out[f"rsi_{w}"] = rsi(s["mid"], w)
    for name in ("ret", "trade_ret", "ofi", "signed_volume", "imbalance_1", "trade_imbalance", "volume",
                 "spread_bps"):
        for k in range(1, 6):
            if w > k + 1:
                out[f"acf_{name}_{k}_{w}"] = corr(s[name], lagged(s[name], k), w)
    if w > 2:
        for k in range(-5, 6):
            tag = f"p{k}" if k > 0 else (f"m{-k}" if k < 0 else "0")
            if peer is None:
                out[f"leadlag_{tag}_{w}"] = np.full(len(s["ret"]), np.nan)
            else:
                out[f"leadlag_{tag}_{w}"] = corr(lagged(s["ret"], max(-k, 0)), lagged(peer["ret"], max(k, 0)), w)
