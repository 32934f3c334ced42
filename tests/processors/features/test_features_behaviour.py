"""Warm-up, quiet instruments, gaps, checkpoints and the engine's API, on small generated streams and real data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from processors.features import (
    ConfigError,
    FeatureConfig,
    FeatureEngine,
    StateError,
    UnknownFeatureError,
    UnknownRecordError,
)
from tests.processors.features.realdata import binance_btc_events
from tests.processors.features.support import SECOND, matrix, run
from topics.records import BboUpdate, BookTrade, Level, MboRecord, Mbp10Snapshot, QuoteTick, TradeTick

pytestmark = pytest.mark.unit

PX = 1_000_000_000


def book_events(inst: int, bar: int, rng: np.random.Generator, base: float) -> list:
    """A BBO, an MBP-10 snapshot and a trade of MBO instrument ``inst`` inside bar ``bar`` (1 s bars)."""
    ts = bar * SECOND + 1000 * inst
    bid = (int(base) + int(rng.integers(-3, 4))) * PX
    common: dict[str, Any] = {"publisher_id": 1, "instrument_id": inst, "ts_event": ts, "ts_recv": ts, "sequence": bar}
    bids = [Level(bid - i * PX, int(rng.integers(1, 50)), 1) for i in range(10)]
    asks = [Level(bid + (i + 1) * PX, int(rng.integers(1, 50)), 1) for i in range(10)]
    return [
        BboUpdate(**common, bid_px=bid, bid_sz=bids[0].size, bid_ct=1, ask_px=asks[0].price, ask_sz=asks[0].size,
                  ask_ct=1),
        Mbp10Snapshot(**common, bids=bids, asks=asks),
        BookTrade(**common, price=bid, size=int(rng.integers(1, 9)), side="B" if rng.random() < 0.5 else "A",
                  order_id=1),
    ]


def busy_stream(bars: int) -> list:
    rng = np.random.default_rng(7)
    out = []
    for k in range(bars):
        for inst in (1, 2):
            out += [(r.ts_recv, r) for r in book_events(inst, k, rng, 5000.0)]
    return out


def test_warmup_bars_are_nan_then_every_feature_is_finite() -> None:
    cfg = FeatureConfig(intervals_ns=(SECOND,), assets={"1": "ES", "2": "ES"})
    engine, frames = run(busy_stream(130), cfg)
    got = matrix(frames, "1")
    for j, spec in enumerate(engine.specs()):
        col = got[:, j]
        assert np.isnan(col[: spec.warmup]).all(), f"{spec.name} is not NaN during its {spec.warmup} warm-up bars"
        assert np.isfinite(col[spec.warmup:]).all(), f"{spec.name} is not finite after its warm-up {spec.warmup}"


def test_quiet_instrument_documented_values() -> None:
    cfg = FeatureConfig(intervals_ns=(SECOND,))
    rng = np.random.default_rng(3)
    events = [(r.ts_recv, r) for k in range(3) for r in book_events(1, k, rng, 5000.0)]
    events += [(r.ts_recv, r) for k in range(8) for r in book_events(2, k, rng, 4000.0)]  # 1 quiet from bar 3
    events.sort(key=lambda e: e[0])
    engine, frames = run(events, cfg)
    quiet = {name: matrix(frames, "1")[3:, engine.names().index(name)] for name in engine.names()}
    last_trade = [r for _, r in events if isinstance(r, BookTrade) and r.instrument_id == 1][-1].price / PX
    for name in ("volume", "trade_count", "signed_volume", "notional", "ofi", "quote_count", "ret", "trade_ret",
                 "trade_imbalance", "var_cc", "var_parkinson", "var_gk", "var_rs", "range_bps", "volume_sum_3",
                 "trade_imbalance_3", "ret_3"):
        assert (quiet[name][2:] == 0.0).all(), name
    for name in ("vwap", "open", "high", "low", "close"):
        assert (quiet[name] == last_trade).all(), name
    assert (quiet["vwap_3"][2:] == last_trade).all()  # once the window holds no trade
    assert (quiet["mid"] == quiet["mid"][0]).all()


def test_gap_longer_than_max_gap_bars_restarts_the_warmup() -> None:
    cfg = FeatureConfig(intervals_ns=(SECOND,), max_gap_bars=10)
    rng = np.random.default_rng(5)
    engine = FeatureEngine(cfg)
    engine.advance_to(0)
    frames = []
    for k in [*range(20), *range(100, 110)]:
        frames += engine.advance_to(k * SECOND)
        for r in book_events(1, k, rng, 5000.0):
            engine.feed(r)
    frames += engine.advance_to(110 * SECOND)
    ends = [f.ts_event // SECOND for f in frames]
    assert ends == [*range(1, 20), *range(101, 111)]  # bars 20-99 skipped, not emitted
    ret = np.array([f.column("ret")[0] for f in frames])
    assert math.isnan(ret[19]) and not math.isnan(ret[20])  # first bar after the gap warms up again
    assert math.isnan(frames[20].column("mid_mean_3")[0]) and not math.isnan(frames[21].column("mid_mean_3")[0])


def test_short_gap_gives_quiet_bars() -> None:
    cfg = FeatureConfig(intervals_ns=(SECOND,))
    rng = np.random.default_rng(5)
    engine = FeatureEngine(cfg)
    engine.advance_to(0)
    for r in book_events(1, 0, rng, 5000.0):
        engine.feed(r)
    frames = engine.advance_to(5 * SECOND + 1)
    assert [f.ts_event for f in frames] == [k * SECOND for k in range(1, 6)]
    assert [f.column("volume")[0] for f in frames] == [frames[0].column("volume")[0], 0.0, 0.0, 0.0, 0.0]


@pytest.mark.slow
def test_checkpoint_mid_session_gives_identical_later_bars() -> None:
    events = binance_btc_events()
    cfg = FeatureConfig(intervals_ns=(SECOND, 7 * SECOND), assets={"binance:BTCUSDT": "BTC",
                                                                   "binance_futures:BTCUSDT": "BTC"})
    _, whole = run(events, cfg)
    half = len(events) // 2
    first, before = run(events, cfg, stop=half)
    restored = FeatureEngine.restore(first.checkpoint())
    _, after = run(events, cfg, engine=restored, start=half)
    assert len(before) + len(after) == len(whole)
    for a, b in zip(whole[len(before):], after, strict=True):
        assert (a.ts_event, a.interval_ns, a.instruments) == (b.ts_event, b.interval_ns, b.instruments)
        assert np.array_equal(a.values, b.values, equal_nan=True)


def test_both_intervals_close_on_their_own_boundaries() -> None:
    engine = FeatureEngine(FeatureConfig(intervals_ns=(SECOND, 60 * SECOND)))
    engine.advance_to(30 * SECOND)
    engine.feed(QuoteTick(venue="v", symbol="S", ts_event=1, ts_recv=1, bid_px=PX, bid_sz=PX, ask_px=2 * PX,
                          ask_sz=PX))
    frames = engine.advance_to(61 * SECOND)
    assert [(f.ts_event // SECOND, f.interval_ns // SECOND) for f in frames] == [
        *((k, 1) for k in range(31, 60)), (60, 1), (60, 60), (61, 1)]
    bars = frames[-1].bars()
    assert bars[0].instrument == "v:S" and bars[0].values["mid"] == 1.5 and bars[0].values["ret_100"] is None


def test_trade_ticks_use_fixed_point_sizes() -> None:
    engine = FeatureEngine(FeatureConfig(intervals_ns=(SECOND,)))
    engine.advance_to(0)
    engine.feed(TradeTick(venue="v", symbol="S", ts_event=1, ts_recv=1, price=2 * PX, size=PX // 2, side="B",
                          trade_id="1"))
    (frame,) = engine.advance_to(SECOND)
    assert frame.row("v:S")["volume"] == 0.5 and frame.row("v:S")["notional"] == 1.0


def test_errors() -> None:
    engine = FeatureEngine()
    rec = MboRecord(ts_recv=0, ts_event=0, publisher_id=1, instrument_id=1, action="A", side="B", price=1, size=1,
                    order_id=1)
    with pytest.raises(UnknownRecordError):
        engine.feed(rec)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        FeatureConfig(windows=(5, 3))
    with pytest.raises(ConfigError):
        FeatureConfig(windows=(1, 3))
    with pytest.raises(StateError):
        FeatureEngine.restore(b"not a checkpoint")
    engine.advance_to(0)
    engine.feed(QuoteTick(venue="v", symbol="S", ts_event=1, ts_recv=1, bid_px=PX, bid_sz=PX, ask_px=2 * PX,
                          ask_sz=PX))
    (frame, *_rest) = engine.advance_to(SECOND)
    with pytest.raises(UnknownFeatureError):
        frame.column("nope")


def test_restored_engine_takes_new_instruments() -> None:
    cfg = FeatureConfig(intervals_ns=(SECOND,))
    engine = FeatureEngine(cfg, capacity=1)
    engine.advance_to(0)
    quote = QuoteTick(venue="v", symbol="S", ts_event=1, ts_recv=1, bid_px=PX, bid_sz=PX, ask_px=2 * PX, ask_sz=PX)
    engine.feed(quote)
    engine.advance_to(SECOND)
    restored = FeatureEngine.restore(engine.checkpoint())
    for name in ("a", "b", "c"):
        restored.feed(QuoteTick(venue="w", symbol=name, ts_event=2, ts_recv=2, bid_px=PX, bid_sz=PX, ask_px=3 * PX,
                                ask_sz=PX))
    (frame,) = restored.advance_to(2 * SECOND)
    assert frame.instruments == ["v:S", "w:a", "w:b", "w:c"]
    assert frame.column("ret").tolist()[0] == 0.0 and math.isnan(frame.column("ret")[1])
