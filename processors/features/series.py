"""Bar-level series: one value per instrument per bar, from the bar's inputs and the previous bar.

These are the features with window 1 and the inputs of every rolling feature (they are kept in the series ring).
Quiet bars: the quote and depth carry over (so mid returns are 0), volume, counts and OFI are 0, the trade
imbalance is 0, and the trade open/high/low/close and VWAP are the last trade price (NaN before the first trade).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

LN2 = float(np.log(2.0))
BPS = 1e4


class SeriesDef(NamedTuple):
    name: str
    formula: str
    inputs: str
    warmup: int  # bars of NaN after the instrument's first quote (or first trade, for trade prices)


_B, _T, _M = "BBO/QuoteTick", "BookTrade/TradeTick", "MBP-10"
SERIES: tuple[SeriesDef, ...] = (
    SeriesDef("mid", "(bid + ask) / 2 at the bar close", _B, 0),
    SeriesDef("microprice", "(bid·ask_sz + ask·bid_sz) / (bid_sz + ask_sz)", _B, 0),
    SeriesDef("wmid_5", "(vwap_bid5·depth_ask_5 + vwap_ask5·depth_bid_5) / depth_5, vwap_side5 = Σpx·sz / Σsz", _M, 0),
    SeriesDef("wmid_10", "as wmid_5 over the best 10 levels of each side", _M, 0),
    SeriesDef("micro_dev_bps", "(microprice − mid) / mid · 1e4", _B, 0),
    SeriesDef("spread", "ask − bid", _B, 0),
    SeriesDef("spread_bps", "(ask − bid) / mid · 1e4", _B, 0),
    SeriesDef("depth_bid_1", "bid_sz", _B, 0),
    SeriesDef("depth_ask_1", "ask_sz", _B, 0),
    SeriesDef("depth_1", "bid_sz + ask_sz", _B, 0),
    SeriesDef("depth_bid_5", "Σ size of the best 5 bid levels", _M, 0),
    SeriesDef("depth_ask_5", "Σ size of the best 5 ask levels", _M, 0),
    SeriesDef("depth_5", "depth_bid_5 + depth_ask_5", _M, 0),
    SeriesDef("depth_bid_10", "Σ size of the best 10 bid levels", _M, 0),
    SeriesDef("depth_ask_10", "Σ size of the best 10 ask levels", _M, 0),
    SeriesDef("depth_10", "depth_bid_10 + depth_ask_10", _M, 0),
    SeriesDef("imbalance_1", "(bid_sz − ask_sz) / (bid_sz + ask_sz)", _B, 0),
    SeriesDef("imbalance_5", "(depth_bid_5 − depth_ask_5) / depth_5", _M, 0),
    SeriesDef("imbalance_10", "(depth_bid_10 − depth_ask_10) / depth_10", _M, 0),
    SeriesDef("ofi", "Σ over the bar's L1 changes of e = 1{b≥b'}q_b − 1{b≤b'}q_b' − 1{a≤a'}q_a + 1{a≥a'}q_a' "
              "(Cont–Kukanov–Stoikov; ' = previous quote)", _B, 0),
    SeriesDef("ofi_norm", "ofi / depth_1", _B, 0),
    SeriesDef("quote_count", "number of L1 updates in the bar", _B, 0),
    SeriesDef("trade_count", "number of trades in the bar", _T, 0),
    SeriesDef("volume", "Σ trade size", _T, 0),
    SeriesDef("buy_volume", "Σ size of buyer-initiated trades (aggressor B)", _T, 0),
    SeriesDef("sell_volume", "Σ size of seller-initiated trades (aggressor A)", _T, 0),
    SeriesDef("signed_volume", "buy_volume − sell_volume", _T, 0),
    SeriesDef("notional", "Σ price·size", _T, 0),
    SeriesDef("trade_imbalance", "signed_volume / volume (0 without trades)", _T, 0),
    SeriesDef("avg_trade_size", "volume / trade_count (0 without trades)", _T, 0),
    SeriesDef("vwap", "notional / volume (last trade price without trades)", _T, 0),
    SeriesDef("open", "first trade price (last trade price without trades)", _T, 0),
    SeriesDef("high", "highest trade price (last trade price without trades)", _T, 0),
    SeriesDef("low", "lowest trade price (last trade price without trades)", _T, 0),
    SeriesDef("close", "last trade price", _T, 0),
    SeriesDef("mid_high", "max(mid_open, mids in the bar, mid); mid_open = previous bar's mid", _B, 1),
    SeriesDef("mid_low", "min(mid_open, mids in the bar, mid)", _B, 1),
    SeriesDef("range_bps", "(mid_high − mid_low) / mid · 1e4", _B, 1),
    SeriesDef("ret", "ln(mid / mid_open) (0 in a quiet bar)", _B, 1),
    SeriesDef("trade_ret", "ln(close / previous close)", _T, 1),
    SeriesDef("var_cc", "ret² (close-to-close variance term)", _B, 1),
    SeriesDef("var_parkinson", "ln(mid_high / mid_low)² / (4 ln 2)", _B, 1),
    SeriesDef("var_gk", "½ ln(H/L)² − (2 ln 2 − 1) ln(C/O)² on mid O/H/L/C (Garman–Klass)", _B, 1),
    SeriesDef("var_rs", "ln(H/C)·ln(H/O) + ln(L/C)·ln(L/O) on mid O/H/L/C (Rogers–Satchell)", _B, 1),
    SeriesDef("basis_bps", "(mid − peer mid) / peer mid · 1e4 (NaN without a peer venue)", "mid of two venues", 0),
)
INDEX = {s.name: i for i, s in enumerate(SERIES)}


def compute_series(q: dict[str, np.ndarray], b: dict[str, np.ndarray], prev: np.ndarray,
                   peers: np.ndarray) -> np.ndarray:
    """The bar's series (n, len(SERIES)) from carried quotes ``q``, the bar's sums ``b``, the previous bar's
    series ``prev`` (NaN rows for a first bar) and each slot's peer (-1: none)."""
    v: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        _book(v, q)
        _flow(v, q, b)
        _trades(v, q, b, prev[:, INDEX["close"]])
        _mid_range(v, b, prev[:, INDEX["mid"]])
        _basis(v, peers)
    return np.stack([v[s.name] for s in SERIES], axis=1)


def _book(v: dict[str, np.ndarray], q: dict[str, np.ndarray]) -> None:
    bp, bq, ap, aq = q["bid_px"], q["bid_sz"], q["ask_px"], q["ask_sz"]
    mid = (bp + ap) * 0.5
    v["mid"] = mid
    v["microprice"] = (bp * aq + ap * bq) / (bq + aq)
    v["micro_dev_bps"] = (v["microprice"] - mid) / mid * BPS
    v["spread"] = ap - bp
    v["spread_bps"] = (ap - bp) / mid * BPS
    v["depth_bid_1"], v["depth_ask_1"], v["depth_1"] = bq, aq, bq + aq
    v["imbalance_1"] = (bq - aq) / (bq + aq)
    for k in (5, 10):
        db, da, nb, na = q[f"dbid{k}"], q[f"dask{k}"], q[f"nbid{k}"], q[f"nask{k}"]
        v[f"depth_bid_{k}"], v[f"depth_ask_{k}"], v[f"depth_{k}"] = db, da, db + da
        v[f"imbalance_{k}"] = (db - da) / (db + da)
        v[f"wmid_{k}"] = (nb / db * da + na / da * db) / (db + da)


def _flow(v: dict[str, np.ndarray], q: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    depth1 = q["bid_sz"] + q["ask_sz"]
    v["ofi"] = b["ofi"]
    v["ofi_norm"] = np.where(b["ofi"] == 0.0, 0.0, b["ofi"] / depth1)
    v["quote_count"] = b["quotes"]


def _trades(v: dict[str, np.ndarray], q: dict[str, np.ndarray], b: dict[str, np.ndarray],
            prev_close: np.ndarray) -> None:
    vol, last = b["volume"], q["last_px"]
    traded = b["trades"] > 0
    v["trade_count"], v["volume"], v["notional"] = b["trades"], vol, b["notional"]
    v["buy_volume"], v["sell_volume"] = b["buy"], b["sell"]
    v["signed_volume"] = b["buy"] - b["sell"]
    v["trade_imbalance"] = np.where(traded, v["signed_volume"] / vol, 0.0)
    v["avg_trade_size"] = np.where(traded, vol / b["trades"], 0.0)
    v["vwap"] = np.where(traded, b["notional"] / vol, last)
    v["open"] = np.where(traded, b["t_open"], last)
    v["high"] = np.where(traded, b["t_high"], last)
    v["low"] = np.where(traded, b["t_low"], last)
    v["close"] = last
    v["trade_ret"] = np.log(last / prev_close)


def _mid_range(v: dict[str, np.ndarray], b: dict[str, np.ndarray], mid_open: np.ndarray) -> None:
    c = v["mid"]
    h = np.fmax(np.fmax(b["mid_hi"], mid_open), c)
    lo = np.fmin(np.fmin(b["mid_lo"], mid_open), c)
    missing = np.isnan(mid_open) | np.isnan(c)
    h = np.where(missing, np.nan, h)
    lo = np.where(missing, np.nan, lo)
    v["mid_high"], v["mid_low"] = h, lo
    v["range_bps"] = (h - lo) / c * BPS
    ret = np.log(c / mid_open)
    hl = np.log(h / lo)
    v["ret"] = ret
    v["var_cc"] = ret * ret
    v["var_parkinson"] = hl * hl / (4.0 * LN2)
    v["var_gk"] = 0.5 * hl * hl - (2.0 * LN2 - 1.0) * ret * ret
    v["var_rs"] = np.log(h / c) * np.log(h / mid_open) + np.log(lo / c) * np.log(lo / mid_open)


def _basis(v: dict[str, np.ndarray], peers: np.ndarray) -> None:
    mid = v["mid"]
    peer_mid = np.where(peers >= 0, mid[np.maximum(peers, 0)], np.nan)
    v["basis_bps"] = (mid - peer_mid) / peer_mid * BPS
