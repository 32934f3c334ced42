"""Slow, direct bar-level series from events, written from the definitions in docs/features.md (independent of
the engine's code): one instrument at a time, one bar at a time, plain Python."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from processors.features import Record, instrument_key
from topics.records import BboUpdate, BookTrade, Mbp10Snapshot, QuoteTick, TradeTick

NAN = math.nan
FIX = 1e-9


class Bar:
    def __init__(self) -> None:
        self.quotes: list[tuple[float, float, float, float]] = []
        self.trades: list[tuple[float, float, str]] = []


def split_bars(events: Iterable[tuple[int, Record]], instrument: str, interval: int, first: int, count: int
               ) -> tuple[list[Bar], list[tuple[float, float, float, float] | None],
                          list[tuple[list[tuple[float, float]], list[tuple[float, float]]] | None]]:
    """Per bar: its quotes and trades; the quote and the MBP-10 levels in force at each bar's end."""
    bars = [Bar() for _ in range(count)]
    quote_at_end: list[tuple[float, float, float, float] | None] = [None] * count
    depth_at_end: list[tuple[list[tuple[float, float]], list[tuple[float, float]]] | None] = [None] * count
    quote = None
    depth = None
    k_prev = 0
    for ts, rec in events:
        if instrument_key(rec) != instrument:
            continue
        k = ts // interval - first
        for j in range(k_prev, min(k, count)):
            quote_at_end[j], depth_at_end[j] = quote, depth
        k_prev = max(k_prev, k)
        if k >= count:
            break
        if isinstance(rec, BboUpdate | QuoteTick):
            scale = 1.0 if isinstance(rec, BboUpdate) else FIX
            bp = NAN if rec.bid_px is None else rec.bid_px * FIX
            ap = NAN if rec.ask_px is None else rec.ask_px * FIX
            bq = NAN if rec.bid_px is None else rec.bid_sz * scale
            aq = NAN if rec.ask_px is None else rec.ask_sz * scale
            quote = (bp, bq, ap, aq)
            bars[k].quotes.append(quote)
        elif isinstance(rec, BookTrade | TradeTick):
            scale = 1.0 if isinstance(rec, BookTrade) else FIX
            bars[k].trades.append((rec.price * FIX, rec.size * scale, rec.side))
        elif isinstance(rec, Mbp10Snapshot):
            depth = ([(lv.price * FIX, float(lv.size)) for lv in rec.bids],
                     [(lv.price * FIX, float(lv.size)) for lv in rec.asks])
    for j in range(k_prev, count):
        quote_at_end[j], depth_at_end[j] = quote, depth
    return bars, quote_at_end, depth_at_end


def ofi_of(prev: tuple[float, float, float, float] | None, new: tuple[float, float, float, float]) -> float:
    """Cont, Kukanov & Stoikov (2014), e_n; 0 when a quote lacks a side."""
    if prev is None or any(math.isnan(v) for v in (prev[0], prev[2], new[0], new[2])):
        return 0.0
    (b0, qb0, a0, qa0), (b, qb, a, qa) = prev, new
    return (qb if b >= b0 else 0.0) - (qb0 if b <= b0 else 0.0) - (qa if a <= a0 else 0.0) + (qa0 if a >= a0 else 0.0)


def bar_series(events: Iterable[tuple[int, Record]], instrument: str, interval: int, first: int, count: int
               ) -> dict[str, np.ndarray]:
    """Every bar-level series of one instrument over ``count`` bars starting at bar number ``first``."""
    bars, quotes, depths = split_bars(events, instrument, interval, first, count)
    rows: list[dict[str, float]] = []
    prev_quote = None
    last_px = NAN
    for k in range(count):
        row: dict[str, float] = {}
        _quote_features(row, quotes[k])
        _depth_features(row, depths[k])
        ofi = 0.0
        for q in bars[k].quotes:
            ofi += ofi_of(prev_quote, q)
            prev_quote = q
        row["ofi"], row["quote_count"] = ofi, float(len(bars[k].quotes))
        row["ofi_norm"] = 0.0 if ofi == 0.0 else ofi / row["depth_1"]
        last_px = _trade_features(row, bars[k].trades, last_px)
        prev = rows[-1] if rows else None
        _mid_features(row, bars[k], prev)
        row["trade_ret"] = math.log(row["close"] / prev["close"]) if prev else NAN
        rows.append(row)
    return {name: np.array([r[name] for r in rows]) for name in rows[0]}


def _quote_features(row: dict[str, float], q: tuple[float, float, float, float] | None) -> None:
    bp, bq, ap, aq = q if q is not None else (NAN, NAN, NAN, NAN)
    mid = (bp + ap) / 2
    row["mid"] = mid
    row["microprice"] = _div(bp * aq + ap * bq, bq + aq)
    row["micro_dev_bps"] = (row["microprice"] - mid) / mid * 1e4
    row["spread"] = ap - bp
    row["spread_bps"] = (ap - bp) / mid * 1e4
    row["depth_bid_1"], row["depth_ask_1"], row["depth_1"] = bq, aq, bq + aq
    row["imbalance_1"] = _div(bq - aq, bq + aq)


def _depth_features(row: dict[str, float], d: tuple[list[tuple[float, float]], list[tuple[float, float]]] | None
                    ) -> None:
    for k in (5, 10):
        if d is None:
            for name in ("depth_bid", "depth_ask", "depth", "imbalance", "wmid"):
                row[f"{name}_{k}"] = NAN
            continue
        bids, asks = d[0][:k], d[1][:k]
        db, da = sum(s for _, s in bids), sum(s for _, s in asks)
        row[f"depth_bid_{k}"], row[f"depth_ask_{k}"], row[f"depth_{k}"] = db, da, db + da
        row[f"imbalance_{k}"] = _div(db - da, db + da)
        vwap_b = _div(sum(p * s for p, s in bids), db)
        vwap_a = _div(sum(p * s for p, s in asks), da)
        row[f"wmid_{k}"] = _div(vwap_b * da + vwap_a * db, db + da)


def _trade_features(row: dict[str, float], trades: list[tuple[float, float, str]], last_px: float) -> float:
    vol = sum(s for _, s, _ in trades)
    buy = sum(s for _, s, side in trades if side == "B")
    sell = sum(s for _, s, side in trades if side == "A")
    notional = sum(p * s for p, s, _ in trades)
    row.update(trade_count=float(len(trades)), volume=vol, buy_volume=buy, sell_volume=sell,
               signed_volume=buy - sell, notional=notional)
    if trades:
        last_px = trades[-1][0]
        prices = [p for p, _, _ in trades]
        row.update(trade_imbalance=(buy - sell) / vol, avg_trade_size=vol / len(trades), vwap=notional / vol,
                   open=prices[0], high=max(prices), low=min(prices))
    else:
        row.update(trade_imbalance=0.0, avg_trade_size=0.0, vwap=last_px, open=last_px, high=last_px, low=last_px)
    row["close"] = last_px
    return last_px


def _mid_features(row: dict[str, float], bar: Bar, prev: dict[str, float] | None) -> None:
    o = prev["mid"] if prev else NAN
    c = row["mid"]
    keys = ("mid_high", "mid_low", "range_bps", "ret", "var_cc", "var_parkinson", "var_gk", "var_rs")
    if math.isnan(o) or math.isnan(c):
        row.update(dict.fromkeys(keys, NAN))
        return
    mids = [o, c] + [(b + a) / 2 for b, _, a, _ in bar.quotes if not math.isnan(b + a)]
    h, lo = max(mids), min(mids)
    ln2 = math.log(2.0)
    row.update(mid_high=h, mid_low=lo, range_bps=(h - lo) / c * 1e4, ret=math.log(c / o),
               var_cc=math.log(c / o) ** 2, var_parkinson=math.log(h / lo) ** 2 / (4 * ln2),
               var_gk=0.5 * math.log(h / lo) ** 2 - (2 * ln2 - 1) * math.log(c / o) ** 2,
               var_rs=math.log(h / c) * math.log(h / o) + math.log(lo / c) * math.log(lo / o))


def _div(a: float, b: float) -> float:
    return NAN if b == 0 or math.isnan(b) else a / b
