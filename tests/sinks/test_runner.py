"""The sink loop on an in-memory Kafka and store: batching, offsets after the database, dead letters, outages,
backpressure, replays."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import cast

import pytest

from sinks import copybin, samples, tables
from sinks.batching import Accumulator, Backoff
from sinks.errors import SinkError, StoreError
from sinks.runner import Sink, SinkConfig
from sinks.store import MemoryStore, truncate_ts
from tests.sinks.fakes import FakeConsumer, FakeDeadLetters, GatedStore, as_store
from topics import codec

pytestmark = pytest.mark.unit

TOPIC = "bbo-in"


def bbo_partitions(n_per_partition: int, partitions: int = 3) -> dict[tuple[str, int], list[bytes]]:
    records = samples.bbo_updates(n_per_partition * partitions)
    return {(TOPIC, p): [codec.encode(r) for r in records[p::partitions]] for p in range(partitions)}


def make_sink(consumer: FakeConsumer, store: object, **overrides: object) -> Sink:
    config = SinkConfig(bootstrap_servers="fake", topics={TOPIC: tables.BBO}, dead_letter_topic="dead",
                        batch_rows=37, batch_ms=20, max_pending_rows=1000, idle_exit_s=0.2)
    for key, value in overrides.items():
        setattr(config, key, value)
    sink = Sink(config, as_store(store), consumer=consumer, dead_letters=FakeDeadLetters())
    sink.writer._backoff = Backoff(0.001, 0.01)
    return sink


def wait_until(condition: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.005)


def expected_rows(consumer: FakeConsumer) -> list[tuple]:
    rows = [tables.BBO.rows_of(codec.decode(tables.BBO.record_type, v))[0]
            for values in consumer.partitions.values() for v in values]
    return sorted((truncate_ts(tables.BBO, r) for r in rows), key=tables.BBO.key_of)


def test_every_message_is_stored_once_and_offsets_are_committed_after_the_database() -> None:
    store = MemoryStore()
    consumer = FakeConsumer(bbo_partitions(100), on_commit=lambda: store.count("bbo"))
    assert make_sink(consumer, store).run() == 0
    assert store.fetch("bbo") == expected_rows(consumer)
    assert consumer.committed_offsets() == {(TOPIC, p): 100 for p in range(3)}
    for offsets, stored in consumer.commits:
        assert stored >= sum(offsets.values()), "an offset was committed before its rows were stored"


def test_malformed_messages_become_dead_letters_naming_the_field_and_the_sink_carries_on() -> None:
    store = MemoryStore()
    parts = bbo_partitions(10, partitions=1)
    good = parts[(TOPIC, 0)]
    parts[(TOPIC, 0)] = [*good[:5], b"{not json", b'{"publisher_id": 1}', *good[5:]]
    consumer = FakeConsumer(parts)
    sink = make_sink(consumer, store)
    assert sink.run() == 0
    dead = cast(FakeDeadLetters, sink._dead).sent
    assert [(t, p, o) for t, p, o, _ in dead] == [(TOPIC, 0, 5), (TOPIC, 0, 6)]
    assert "not valid JSON" in dead[0][3]
    assert "$.instrument_id" in dead[1][3]
    assert store.count("bbo") == 10
    assert consumer.committed_offsets() == {(TOPIC, 0): 12}
    assert sink.metrics.dead_letters.labels(TOPIC)._value.get() == 2


def test_tick_frames_are_stored_a_row_per_tick_and_a_bad_frame_becomes_one_dead_letter() -> None:
    # Arrange: the exchange ingest's frames (JSON arrays of one key's ticks), a single tick, and a frame with a
    # malformed second tick
    store = MemoryStore()
    trades = samples.exchange_trades(9)
    bad = codec.encode(trades[8]).replace(b'"size":', b'"size":"x","was":')
    values = [codec.encode_frame(trades[0:4]), codec.encode(trades[4]), codec.encode_frame(trades[5:8]),
              b"[" + codec.encode(trades[8]) + b"," + bad + b"]"]
    consumer = FakeConsumer({("trades-in", 0): values})
    sink = make_sink(consumer, store, topics={"trades-in": tables.EXCHANGE_TRADES})
    # Act
    assert sink.run() == 0
    # Assert
    stored = store.fetch("exchange_trades")
    assert sorted(r[3] for r in stored) == sorted(t.trade_id for t in trades[:8])
    dead = cast(FakeDeadLetters, sink._dead).sent
    assert [(t, p, o) for t, p, o, _ in dead] == [("trades-in", 0, 3)]
    assert "$[1].size" in dead[0][3]
    assert consumer.committed_offsets() == {("trades-in", 0): 4}


def test_an_outage_pauses_consumption_retries_the_same_batch_and_loses_nothing() -> None:
    store = MemoryStore()
    store.fail_next(4)
    consumer = FakeConsumer(bbo_partitions(100), on_commit=lambda: store.count("bbo"))
    sink = make_sink(consumer, store)
    assert sink.run() == 0
    assert consumer.pause_calls >= 1 and consumer.resume_calls >= 1
    assert sink.metrics.retries._value.get() == 4
    assert store.fetch("bbo") == expected_rows(consumer)
    for offsets, stored in consumer.commits:
        assert stored >= sum(offsets.values())


def test_pending_rows_stay_bounded_while_the_database_stalls() -> None:
    gated = GatedStore(MemoryStore())
    consumer = FakeConsumer(bbo_partitions(400))
    sink = make_sink(consumer, gated, max_pending_rows=100, batch_rows=20, consume_batch=10, idle_exit_s=0.5)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(sink.run()))
    thread.start()
    try:
        wait_until(lambda: bool(consumer.paused), "the consumer to pause")
        wait_until(lambda: sum(consumer.positions.values()) >= 100, "the consumer to fill the bound")
        assert sink.pending_rows() <= 100 + 10
        assert sink.metrics.paused._value.get() == 1
    finally:
        gated.gate.set()
        thread.join(60)
    assert result == [0]
    assert gated.inner.count("bbo") == 1200
    assert sink.metrics.paused._value.get() == 0


class SlowStore:
    """A MemoryStore that takes ``delay_s`` for every batch: a healthy database, slower than Kafka."""

    def __init__(self, inner: MemoryStore, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    def write_batch(self, rows: object) -> dict[str, int]:
        time.sleep(self.delay_s)
        return self.inner.write_batch(rows)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_slower_but_healthy_database_is_waited_for_without_pausing_and_pending_rows_stay_bounded() -> None:
    slow = SlowStore(MemoryStore(), delay_s=0.02)
    consumer = FakeConsumer(bbo_partitions(400))
    sink = make_sink(consumer, slow, max_pending_rows=100, batch_rows=20, consume_batch=10, idle_exit_s=0.3)
    most_pending: list[int] = []
    step = sink._step

    def step_and_watch() -> None:
        step()
        most_pending.append(sink.pending_rows())

    sink._step = step_and_watch  # type: ignore[method-assign]

    assert sink.run() == 0

    assert consumer.pause_calls == 0
    assert max(most_pending) <= 100 + 10
    assert slow.inner.count("bbo") == 1200


def test_idle_exit_waits_for_consumption_to_resume_after_a_pause_longer_than_the_idle_time() -> None:
    """Paused for longer than --idle-exit while the database stalls, the sink must not take the quiet that follows
    the resume (librdkafka fetches anew) for the end of the topic (found in TimescaleDB mode: bench/sink.py stored
    395,030 of 400,000 rows and stopped)."""
    gated = GatedStore(MemoryStore())
    consumer = FakeConsumer(bbo_partitions(400), resume_empty_polls=4)
    sink = make_sink(consumer, gated, max_pending_rows=100, batch_rows=20, consume_batch=10, idle_exit_s=0.2)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(sink.run()))
    thread.start()
    try:
        wait_until(lambda: bool(consumer.paused), "the consumer to pause")
        time.sleep(0.5)  # the stall outlasts the idle time
    finally:
        gated.gate.set()
        thread.join(60)
    assert result == [0] and consumer.resume_calls >= 1
    assert gated.inner.count("bbo") == 1200


def test_a_refused_batch_stops_the_sink_without_committing_its_offsets() -> None:
    store = MemoryStore()
    store.fail_next(1, StoreError("permission denied for table bbo"))
    consumer = FakeConsumer(bbo_partitions(10))
    with pytest.raises(SinkError, match="permission denied"):
        make_sink(consumer, store, batch_rows=1000).run()
    assert consumer.commits == []
    assert consumer.closed


def test_a_replay_from_the_start_stores_nothing_twice() -> None:
    store = MemoryStore()
    parts = bbo_partitions(50)
    make_sink(FakeConsumer(parts), store).run()
    again = make_sink(FakeConsumer(parts), store)
    assert again.run() == 0
    assert store.count("bbo") == 150
    assert again.metrics.rows_duplicate.labels("bbo")._value.get() == 150
    assert again.metrics.rows_written.labels("bbo")._value.get() == 0


def test_health_and_metrics_are_served_while_running() -> None:
    store = MemoryStore()
    consumer = FakeConsumer(bbo_partitions(20))
    sink = make_sink(consumer, store, metrics_port=0, idle_exit_s=None)
    thread = threading.Thread(target=sink.run)
    thread.start()
    try:
        wait_until(lambda: store.count("bbo") == 60 and sink.http_port is not None, "the rows to be stored")
        with urllib.request.urlopen(f"http://127.0.0.1:{sink.http_port}/health") as resp:
            health = json.loads(resp.read())
        with urllib.request.urlopen(f"http://127.0.0.1:{sink.http_port}/metrics") as resp:
            text = resp.read().decode()
    finally:
        sink.stop()
        thread.join(30)
    assert health["status"] == "ok" and health["paused"] is False and health["assigned_partitions"] == 3
    assert 'orderflow_sink_rows_written_total{table="bbo"} 60.0' in text
    assert "orderflow_sink_batch_seconds_bucket" in text
    assert f'orderflow_sink_lag_messages{{partition="0",topic="{TOPIC}"}}' in text or "lag" in text


def test_a_batch_falls_due_by_rows_or_by_age() -> None:
    acc = Accumulator(max_rows=3, max_age_s=1.0)
    assert not acc.due(0.0) and acc.wait_s(0.0, 0.1) == 0.1
    acc.extend({"bbo": [(1,), (2,)]}, {("t", 0): 5}, 2, now=10.0)
    assert not acc.due(10.5)
    assert acc.due(11.0)
    assert acc.wait_s(10.5, 5.0) == pytest.approx(0.5)
    acc.extend({"bbo": [(3,)]}, {("t", 0): 6}, 1, now=10.6)
    assert acc.due(10.6)
    batch = acc.take()
    assert batch.n_rows == 3 and batch.n_messages == 3 and batch.offsets == {("t", 0): 6}
    assert acc.pending_rows == 0 and not acc.due(100.0)


def test_a_dead_letter_alone_still_moves_the_offset() -> None:
    acc = Accumulator(max_rows=10, max_age_s=1.0)
    acc.extend({}, {("t", 1): 8}, 1, now=0.0)
    assert acc.due(1.0)
    assert acc.take().offsets == {("t", 1): 8}


def test_backoff_grows_to_its_ceiling_and_resets() -> None:
    backoff = Backoff(0.1, 2.0)
    delays = [backoff.next_delay() for _ in range(10)]
    assert 0.05 <= delays[0] <= 0.1
    assert all(1.0 <= d <= 2.0 for d in delays[5:])
    backoff.reset()
    assert backoff.next_delay() <= 0.1


def test_a_feature_vector_counts_for_its_weight_in_the_batch_bound() -> None:
    acc = Accumulator(max_rows=1_000, max_age_s=60.0)
    bbo_rows = [object()] * 500
    vectors = [object()] * (500 // tables.FEATURE_BARS.weight)

    acc.extend({"bbo": bbo_rows}, {(TOPIC, 0): 500}, 500, now=0.0)
    half_full = acc.due(now=1.0)
    acc.extend({tables.FEATURE_BARS.name: vectors}, {(TOPIC, 1): 5}, len(vectors), now=1.0)

    assert tables.FEATURE_BARS.weight > 1
    assert not half_full and acc.due(now=1.0)
    assert acc.pending_rows == 1_000 and acc.batch.n_rows == 500 + len(vectors)


def test_a_batch_is_encoded_for_copy_before_the_writer_gets_it_and_encoded_again_if_it_grew() -> None:
    sink = make_sink(FakeConsumer({}), MemoryStore())
    rows = [tables.BBO.rows_of(r)[0] for r in samples.bbo_updates(30)]
    acc = Accumulator(max_rows=1_000, max_age_s=60.0)
    acc.extend({"bbo": rows[:20]}, {(TOPIC, 0): 20}, 20, now=0.0)

    sink._encode(acc.batch)
    first = acc.batch.rows["bbo"]
    acc.extend({"bbo": rows[20:]}, {(TOPIC, 0): 30}, 10, now=1.0)
    sink._encode(acc.batch)
    second = acc.batch.rows["bbo"]

    assert isinstance(first, copybin.Encoded) and isinstance(second, copybin.Encoded) and second.current
    assert second.payload == b"".join(copybin.chunks(tables.BBO, rows))
