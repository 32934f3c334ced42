"""Closing bars in two halves (``close_to``: bar series for the regime signals; ``finish``: every other feature)
gives the frames of ``advance_to``, whatever is fed in between, and a checkpoint waits for the second half."""

from __future__ import annotations

import random

import numpy as np
import pytest

from processors.features import BarSeries, FeatureConfig, FeatureEngine, FeatureFrame, StateError, instrument_key
from processors.features.series import SERIES
from tests.processors.features.realdata import Event, binance_btc_events
from tests.processors.features.support import SECOND, run
from topics.records import QuoteTick

pytestmark = pytest.mark.unit

CFG = FeatureConfig(intervals_ns=(SECOND, 7 * SECOND),
                    assets={"binance:BTCUSDT": "BTC", "binance_futures:BTCUSDT": "BTC"})


def late_futures(events: tuple[Event, ...]) -> list[Event]:
    """The Binance captures with the futures instrument starting 12 s in: it registers (and becomes the spot's
    peer, which recomputes pair sums) while bars are open."""
    start = events[0][0] + 12 * SECOND
    return [(ts, rec) for ts, rec in events if ts >= start or instrument_key(rec) != "binance_futures:BTCUSDT"]


def in_halves(events: list[Event], cfg: FeatureConfig, seed: int
              ) -> tuple[list[BarSeries], list[FeatureFrame], int]:
    """Feed ``events``, taking each bar's series at once and its features only now and then (about every 50
    events, as a worker waiting for its other groups would); also counts instruments registered in between."""
    rng = random.Random(seed)
    engine = FeatureEngine(cfg)
    engine.close_to(events[0][0])
    bars: list[BarSeries] = []
    frames: list[FeatureFrame] = []
    registered_while_waiting = 0
    for ts, rec in events:
        bars += engine.close_to(ts)
        if engine.unfinished and instrument_key(rec) not in engine.slots:
            registered_while_waiting += 1
        engine.feed(rec)
        if rng.random() < 0.02:
            frames += engine.finish()
    bars += engine.close_to((events[-1][0] // SECOND + 1) * SECOND)
    frames += engine.finish()
    return bars, frames, registered_while_waiting


@pytest.mark.parametrize("seed", [1, 2])
def test_features_taken_later_equal_the_features_taken_at_once(seed: int) -> None:
    events = late_futures(binance_btc_events())
    _, whole = run(events, CFG)

    bars, frames, registered = in_halves(events, CFG, seed)

    assert registered >= 1, "the futures instrument should register while a bar waits for its features"
    assert len(frames) == len(whole) == len(bars)
    for got, want in zip(frames, whole, strict=True):
        assert (got.ts_event, got.interval_ns, got.instruments) == (want.ts_event, want.interval_ns, want.instruments)
        assert np.array_equal(got.values, want.values, equal_nan=True)


def test_the_bar_series_are_the_first_columns_of_the_frame() -> None:
    events = late_futures(binance_btc_events())

    bars, frames, _ = in_halves(events, CFG, seed=3)

    for bar, frame in zip(bars, frames, strict=True):
        assert (bar.ts_event, bar.interval_ns, bar.instruments) == (frame.ts_event, frame.interval_ns,
                                                                    frame.instruments)
        assert np.array_equal(bar.series, frame.values[:, :len(SERIES)], equal_nan=True)
        assert np.array_equal(bar.column("ret"), frame.column("ret"), equal_nan=True)


def test_a_checkpoint_is_refused_until_the_closed_bars_are_finished() -> None:
    engine = FeatureEngine(FeatureConfig(intervals_ns=(SECOND,)))
    engine.close_to(0)
    engine.feed(QuoteTick(venue="v", symbol="S", ts_event=1, ts_recv=1, bid_px=10**9, bid_sz=10**9,
                          ask_px=2 * 10**9, ask_sz=10**9))
    (bar,) = engine.close_to(SECOND)

    with pytest.raises(StateError, match="finish"):
        engine.checkpoint()
    (frame,) = engine.finish()
    restored = FeatureEngine.restore(engine.checkpoint())

    assert bar.ts_event == frame.ts_event == SECOND and not engine.unfinished
    assert restored.instruments == ["v:S"] and not restored.unfinished
