"""Features into regimes on real data, driven as an agent would: events in, bars closed on the event clock,
regime signals out, both engines checkpointed mid-session and restored."""

from __future__ import annotations

import pytest

from processors.features import FeatureConfig, FeatureEngine
from processors.regime import RegimeConfig, RegimeDetector
from tests.processors.features.realdata import binance_btc_events
from topics.records import RegimeSignal

pytestmark = [pytest.mark.unit, pytest.mark.slow]

SECOND = 1_000_000_000
CFG = FeatureConfig(intervals_ns=(SECOND,), assets={"binance:BTCUSDT": "BTC", "binance_futures:BTCUSDT": "BTC"})
REGIME = RegimeConfig(fit_bars=100, vr_window=40)


def drive(events: tuple, engine: FeatureEngine, det: RegimeDetector, start: int, stop: int) -> list[RegimeSignal]:
    out: list[RegimeSignal] = []
    for ts, rec in events[start:stop]:
        for frame in engine.advance_to(ts):
            out += det.update(frame.instruments, frame.ts_event, frame.interval_ns, frame.column("ret")).signals()
        engine.feed(rec)
    return out


def test_agent_loop_with_mid_session_checkpoint_gives_identical_signals() -> None:
    events = binance_btc_events()
    engine = FeatureEngine(CFG)
    engine.advance_to(events[0][0])
    whole = drive(events, engine, RegimeDetector(REGIME), 0, len(events))
    assert {s.kind for s in whole} == {"volatility", "trend"}
    assert {s.instrument for s in whole} == {"binance:BTCUSDT", "binance_futures:BTCUSDT"}
    assert any(s.changed for s in whole) and all(0.0 <= s.probability <= 1.0 for s in whole)

    half = len(events) // 2
    first = FeatureEngine(CFG)
    first.advance_to(events[0][0])
    det = RegimeDetector(REGIME)
    before = drive(events, first, det, 0, half)
    after = drive(events, FeatureEngine.restore(first.checkpoint()), RegimeDetector.restore(det.checkpoint()),
                  half, len(events))
    assert before + after == whole
