"""kill -9 the features worker mid-session and restart it (once on its own RocksDB folder, once on an empty one:
state from the changelog): every bar published, before or after a restart, equals the uninterrupted run's (the
offline engine's, which the worker's uninterrupted run equals, see test_features_worker_e2e). A quiet instrument
gets its bars from the bar timer, each once its end has passed, without any further input."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from processors.features import instrument_key
from tests.streams.features_harness import FeaturesPipeline, last_wanted, reached
from tests.streams.features_support import recorded_events, same_values
from tests.streams.harness import metric, wait_for
from tests.streams.test_features_worker_e2e import ENV, published, reference_by_group
from topics.records import QuoteTick

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]
SECOND = 1_000_000_000


@pytest.fixture
def features(pipeline_factory: Any, shared_data: Any) -> Iterator[FeaturesPipeline]:
    pipeline = FeaturesPipeline(pipeline_factory(partitions=2), **ENV)
    yield pipeline
    pipeline.close()


def bars_closed(worker: Any) -> float:
    return metric(worker.metrics(), "orderflow_features_bars_closed_total") if worker.alive() else 0.0


def test_kill_9_mid_session_then_restart_publishes_the_uninterrupted_bars(features: FeaturesPipeline) -> None:
    features.publish(recorded_events())
    names = {instrument_key(r) for _, r in recorded_events()}
    worker = features.start("f1")
    features.base.wait_healthy(worker)
    for restart, threshold in enumerate((80, 100)):  # bars closed by this process; the session has about 330
        wait_for(f"{threshold} bars before kill {restart + 1}",
                 lambda w=worker, t=threshold: bars_closed(w) >= t)
        features.base.kill(worker)
        # the second restart comes up with an empty workdir: the groups come back from the changelog
        workdir = features.base.base / f"work-empty-{restart}" if restart else None
        worker = features.start("f1", workdir=workdir)
        features.base.wait_healthy(worker)

    got, partition_of = published(features)
    assert names <= partition_of.keys()
    want_bars, want_signals = reference_by_group(partition_of)
    wait_for("the last bar of every instrument", lambda: reached(worker, last_wanted(want_bars)))
    got, _ = published(features)
    signals = features.signals()

    assert want_bars.keys() <= got.keys()
    repeats = sum(len(v) - 1 for k, v in got.items() if k in want_bars)
    bad = [k for k, bar in want_bars.items() if not all(same_values(g, bar) for g in got[k])]
    assert not bad, f"{len(bad)} of {len(want_bars)} bars differ from the uninterrupted run, first {bad[:3]}"
    for s in signals:
        key = (s.instrument, s.kind, s.interval_ns, s.ts_event)
        assert key not in want_signals or want_signals[key] == s, f"signal differs after a restart: {s}"
    print(f"{len(want_bars)} bars, {repeats} published again after the restarts (identical)")


def test_a_quiet_instrument_gets_its_bars_from_the_timer(pipeline_factory: Any) -> None:
    features = FeaturesPipeline(pipeline_factory(partitions=1), ORDERFLOW_FEATURES_INTERVALS_MS="1000")
    try:
        worker = features.start("f1")
        features.base.wait_healthy(worker)
        start = time.time_ns()
        quote = QuoteTick(venue="test", symbol="QUIET", ts_event=start, ts_recv=start, bid_px=100 * SECOND,
                          bid_sz=SECOND, ask_px=101 * SECOND, ask_sz=SECOND)
        features.publish([(start, quote)])
        first_end = (start // SECOND + 1) * SECOND

        def bars() -> list[tuple[int, int]]:
            published = [b.ts_event for b in features.bars() if b.instrument == "test:QUIET"]
            seen = time.time_ns()  # after the read: each bar was published before this
            return [(end, seen) for end in published]

        got = wait_for("three bars of the quiet instrument", lambda: (lambda b: b if len(b) >= 3 else None)(bars()))
    finally:
        features.close()

    ends = sorted(end for end, _ in got)
    assert ends[:3] == [first_end, first_end + SECOND, first_end + 2 * SECOND]  # one per second, none skipped
    assert all(end <= seen for end, seen in got), "a bar was published before its end"
