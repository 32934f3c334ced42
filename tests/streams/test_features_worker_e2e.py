"""`orderflow features` as a real worker on the session's broker, over recorded data (ESH4 through the book engine,
Binance spot and futures BTCUSDT through the exchange parsers): published bars and regime signals equal the pure
engine's computed offline, malformed records become dead letters, the views answer, and `orderflow sink` stores
the bars and signals in PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ops.stack.testing import LocalStack
from processors.features import FeatureConfig, instrument_key
from processors.regime import RegimeConfig
from sinks import migrate, schema
from streams.features_group import FeatureTopics
from tests.streams.features_harness import FeaturesPipeline, last_wanted, reached
from tests.streams.features_support import (
    INTERVALS,
    event_times,
    offline_frames,
    offline_outputs,
    recorded_events,
    same_values,
    split,
)
from tests.streams.feed import read_all
from tests.streams.harness import REPO_ROOT, get_json, metric, wait_for
from topics.codec import decode
from topics.records import DeadLetter, FeatureBar, RegimeSignal

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

ENV = {"ORDERFLOW_FEATURES_INTERVALS_MS": ",".join(str(iv // 1_000_000) for iv in INTERVALS),
       "ORDERFLOW_FEATURES_REGIME_FIT_BARS": "20"}
REGIME = RegimeConfig(fit_bars=20)


@pytest.fixture
def features(pipeline_factory: Any, shared_data: Any) -> Iterator[FeaturesPipeline]:
    pipeline = FeaturesPipeline(pipeline_factory(partitions=2), **ENV)
    yield pipeline
    pipeline.close()


def reference_by_group(partition_of: dict[str, int]) -> tuple[dict[Any, FeatureBar], dict[Any, RegimeSignal]]:
    """The offline engine and detectors per partition group (the instruments Kafka put in each partition)."""
    events = recorded_events()
    bars: dict[Any, FeatureBar] = {}
    signals: dict[Any, RegimeSignal] = {}
    for group in sorted(set(partition_of.values())):
        part = [e for e in events if partition_of[instrument_key(e[1])] == group]
        topics = FeatureTopics()
        frames = offline_frames(event_times(split(topics, part), topics), FeatureConfig(intervals_ns=INTERVALS))
        b, s = offline_outputs(frames, REGIME)
        bars.update(b)
        signals.update(s)
    return bars, signals


def published(features: FeaturesPipeline) -> tuple[dict[Any, list[FeatureBar]], dict[str, int]]:
    """Every bar published (repeats kept, by key) and the partition of each instrument."""
    bars: dict[Any, list[FeatureBar]] = defaultdict(list)
    partition_of: dict[str, int] = {}
    for partition, _, _, value in read_all(features.bootstrap, features.topics.bars, 120):
        bar = decode(FeatureBar, value)
        bars[(bar.instrument, bar.interval_ns, bar.ts_event)].append(bar)
        partition_of[bar.instrument] = partition
    return bars, partition_of


def test_worker_publishes_the_offline_bars_dead_letters_and_views(features: FeaturesPipeline, pg_dsn: str,
                                                                  stack: LocalStack) -> None:
    bbo_key, quote_key = b"17077", b"binance:BTCUSDT"
    features.publish(recorded_events(), extra=[(features.topics.bbo, bbo_key, b"{not json"),
                                               (features.topics.tick_quotes, quote_key, b'{"venue": "binance"}')])
    expected_instruments = {instrument_key(r) for _, r in recorded_events()}
    worker = features.start("f1")

    features.base.wait_healthy(worker)
    probe = wait_for("bars of every instrument", lambda: _all_instruments(worker, expected_instruments))
    assert probe
    _, partition_of = published(features)
    want_bars, want_signals = reference_by_group(partition_of)
    wait_for("the last bar of every instrument", lambda: reached(worker, last_wanted(want_bars)))
    got, _ = published(features)
    signals = {(s.instrument, s.kind, s.interval_ns, s.ts_event): s for s in features.signals()}

    assert want_bars.keys() <= got.keys()
    bad = [k for k, bar in want_bars.items() if not all(same_values(g, bar) for g in got[k])]
    assert not bad, f"{len(bad)} of {len(want_bars)} bars differ from the offline engine, first {bad[:3]}"
    assert {k: signals[k] for k in want_signals} == want_signals and want_signals
    dead = [decode(DeadLetter, v) for _, _, _, v in read_all(features.bootstrap, features.base.topics.deadletter)]
    where = {(d.topic, d.offset, d.stage) for d in dead}
    assert where == {(features.topics.bbo, 0, "feature-agent"), (features.topics.tick_quotes, 0, "feature-agent")}
    assert {d.partition for d in dead if d.topic == features.topics.bbo} == {partition_of["17077"]}
    assert all(d.reason for d in dead)
    _check_views(worker, want_bars)
    assert features.base.stop(worker) == 0
    _check_sink(features, stack, got, want_signals)


def _all_instruments(worker: Any, names: set[str]) -> bool:
    status, doc = get_json(worker.url + "/features")
    return status == 200 and names <= {row["instrument"] for row in doc["instruments"] if row["last_bar"]}


def _check_views(worker: Any, want_bars: dict[Any, FeatureBar]) -> None:
    status, doc = get_json(worker.url + "/features/binance:BTCUSDT")
    assert status == 200
    bar = doc["bars"][str(INTERVALS[0])]
    assert len(bar["values"]) >= 1400 and "mid" in bar["values"]
    assert get_json(worker.url + "/features/nope:NOTHING")[0] == 404
    status, regimes = get_json(worker.url + "/regimes")
    assert status == 200 and any(r["volatility"]["state"] for r in regimes["regimes"])
    text = worker.metrics()
    assert metric(text, "orderflow_features_bars_closed_total") >= len(want_bars)
    assert metric(text, "orderflow_features_dead_letters_total") == 2
    assert metric(text, "orderflow_features_tick_to_signal_seconds_count") > 0
    assert metric(text, "orderflow_features_bar_features_seconds_count") > 0  # the features after the signals
    assert metric(text, "orderflow_features_consumer_lag") == 0


def _check_sink(features: FeaturesPipeline, stack: LocalStack, got: dict[Any, list[FeatureBar]],
                want_signals: dict[Any, RegimeSignal]) -> None:
    """`orderflow sink` reads the two topics into feature_vectors (one row per bar, read back one row per feature
    through the view feature_bars) and regime_signals."""
    name = f"t_feat_{features.base.prefix.strip('.')}"
    with psycopg.connect(stack.pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    dsn = schema.schema_dsn(stack.pg_dsn, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate.migrate(conn, timescaledb=stack.settings.pg_timescaledb != "off")
        cmd = [sys.executable, "-m", "streams.cli", "sink", "--topic", f"feature_vectors={features.topics.bars}",
               "--topic", f"regime_signals={features.topics.signals}", "--group", f"{features.base.prefix}sink",
               "--dead-letter-topic", features.base.topics.deadletter, "--dsn", dsn, "--metrics-port", "-1",
               "--idle-exit", "5"]
        done = subprocess.run(cmd, cwd=REPO_ROOT, env=stack.env(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT count(*), count(DISTINCT (instrument, interval_ns, ts)) FROM feature_bars"
                                ).fetchone()
            vectors = conn.execute("SELECT count(*) FROM feature_vectors").fetchone()
            signal_rows = conn.execute("SELECT count(*) FROM regime_signals").fetchone()
            one = conn.execute("SELECT value FROM feature_bars WHERE instrument = %s AND interval_ns = %s AND "
                               "name = 'mid' AND value IS NOT NULL ORDER BY ts DESC LIMIT 1",
                               ("17077", INTERVALS[0])).fetchone()
    finally:
        with psycopg.connect(stack.pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    bars_now, _ = published(features)
    assert rows is not None and signal_rows is not None and one is not None
    assert rows[1] == len(bars_now) and rows[0] == sum(len(v[0].values) for v in bars_now.values())
    assert vectors == (len(bars_now),)
    assert signal_rows[0] >= len(want_signals)
    assert 4000 < one[0] < 6000  # ESH4 mid, index points
