"""The features worker's view documents and metrics, built from a keeper fed recorded ticks (no server)."""

from __future__ import annotations

import math

import pytest

from processors.features import FeatureConfig
from processors.regime import RegimeConfig
from streams.features_group import FeatureTopics, GroupKeeper
from streams.features_web import FeatureMetrics, features_doc, instruments_doc, regimes_doc
from tests.processors.features.realdata import binance_btc_events
from tests.streams.features_support import topic_of
from topics.codec import encode

pytestmark = pytest.mark.unit

TOPICS = FeatureTopics()
SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def keeper(shared_data: object) -> GroupKeeper:
    """A keeper that read 60 s of Binance quotes and trades in group 3, 1 s bars, regimes fitted after 10 bars."""
    events = binance_btc_events()
    part = [e for e in events if e[0] < events[0][0] + 60 * SECOND]
    keeper = GroupKeeper(TOPICS, FeatureConfig(intervals_ns=(SECOND,)), RegimeConfig(fit_bars=10))
    keeper.assign(3, None)
    offsets: dict[str, int] = {}
    for _, rec in part:  # in recorded order, every stream caught up: as a live feed
        topic = topic_of(TOPICS, rec)
        offsets[topic] = offsets.get(topic, -1) + 1
        keeper.handle(3, topic, offsets[topic], None, encode(rec), lambda t: True, 0)
        for number in keeper.finishing(0, 0):  # the one group is never behind itself: at once
            keeper.finish(number)
    return keeper


def test_instruments_doc_lists_each_instrument_with_its_group_and_latest_bar(keeper: GroupKeeper) -> None:
    doc = instruments_doc(keeper, "w", True)

    names = [row["instrument"] for row in doc["instruments"]]
    assert names == ["binance:BTCUSDT", "binance_futures:BTCUSDT"]
    assert doc["groups"] == [3] and all(row["group"] == 3 for row in doc["instruments"])
    latest = keeper.groups[3].latest[SECOND].ts_event
    assert all(row["last_bar"] == {str(SECOND): latest} for row in doc["instruments"])


def test_features_doc_gives_the_latest_bar_by_name_with_nulls_while_warming_up(keeper: GroupKeeper) -> None:
    doc = features_doc(keeper, "binance:BTCUSDT")

    assert doc is not None and doc["group"] == 3
    bar = doc["bars"][str(SECOND)]
    frame = keeper.groups[3].latest[SECOND]
    row = frame.row("binance:BTCUSDT")
    assert bar["ts_event"] == frame.ts_event and bar["values"].keys() == row.keys()
    assert all((v is None) == math.isnan(row[k]) for k, v in bar["values"].items())
    assert bar["values"]["mid"] == row["mid"] and bar["values"]["mid"] > 10_000
    assert any(v is None for v in bar["values"].values())  # 100-bar windows are still warming up
    assert features_doc(keeper, "nope:NONE") is None


def test_regimes_doc_names_the_states_of_each_instrument(keeper: GroupKeeper) -> None:
    doc = regimes_doc(keeper)

    rows = {r["instrument"]: r for r in doc["regimes"]}
    assert rows.keys() == {"binance:BTCUSDT", "binance_futures:BTCUSDT"}
    for row in rows.values():
        assert row["volatility"]["state"] in ("calm", "turbulent")
        assert 0.0 <= row["volatility"]["probability"] <= 1.0
        assert row["trend"] == {"state": None, "probability": None, "changed": False}  # 100 bars not reached


def test_metrics_render_the_keeper_counters(keeper: GroupKeeper) -> None:
    metrics = FeatureMetrics()
    metrics.watch(keeper, lambda: {(TOPICS.tick_quotes, 3): 7}, lambda: True)

    text = metrics.render().decode()

    assert f"orderflow_features_records_total {float(keeper.tally.records)}" in text
    assert f"orderflow_features_bars_closed_total {float(keeper.tally.bars_closed)}" in text
    assert f'orderflow_features_consumer_lag{{partition="3",topic="{TOPICS.tick_quotes}"}} 7.0' in text
    assert "orderflow_features_tick_to_signal_seconds_bucket" in text
