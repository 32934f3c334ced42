"""The librdkafka intake on the real broker: it reads what it is assigned from the offset given, in order, tags
each poll's records with their assignment's epoch (so records read before an unassignment or a reassignment are
recognizably stale), knows each partition's end offset, and stops reading while too much waits undelivered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
from confluent_kafka import Producer
from faust.types import TP

from streams import intake as intake_module
from streams.intake import Arrival, Intake, IntakeRecord, merged

pytestmark = pytest.mark.integration


# Record i is stamped STAMP_MS + i. Recent stamps: the broker's time retention (7 days by default) deletes a log
# whose records are stamped earlier, whole, at its next check, which may fall in the middle of a test.
STAMP_MS = int(time.time() * 1000)


def publish(bootstrap: str, topic: str, count: int, partition: int = 0, start: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(start, start + count):
        producer.produce(topic, value=b"v%d" % i, key=b"k%d" % i, partition=partition, timestamp=STAMP_MS + i)
    assert producer.flush(10) == 0


class Reader:
    """An intake and what reached the loop from it."""

    def __init__(self, bootstrap: str, loop: asyncio.AbstractEventLoop, max_records: int = 500) -> None:
        self.arrivals: list[Arrival] = []
        self.intake = Intake(Intake.settings(bootstrap, "intake-test", 10), loop, self.arrivals.append,
                             max_records=max_records)

    def records(self, tp: TP, epoch: int | None = None) -> list[IntakeRecord]:
        return [r for arrival in self.arrivals for t, e, rs in arrival if t == tp and epoch in (None, e) for r in rs]

    async def until(self, done: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "the intake did not deliver in time"
            await asyncio.sleep(0.02)


def with_reader(bootstrap: str, scenario: Callable[[Reader], Awaitable[None]], max_records: int = 500) -> None:
    """Run ``scenario`` on a fresh event loop with a started intake, stopped afterwards."""

    async def main() -> None:
        r = Reader(bootstrap, asyncio.get_running_loop(), max_records)
        r.intake.start()
        try:
            await scenario(r)
        finally:
            r.intake.stop()

    asyncio.run(main())


def test_an_assigned_partition_is_read_from_the_offset_given_in_order_with_its_fields(
        kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=2)
    publish(kafka_bootstrap, topic, 30, partition=1)
    tp = TP(topic, 1)
    with_reader(kafka_bootstrap, partial(first_scenario, tp), max_records=7)


async def first_scenario(tp: TP, r: Reader) -> None:
    topic = tp.topic
    r.intake.assign(tp, 10)
    await r.until(lambda: len(r.records(tp)) >= 20)

    got = r.records(tp)
    assert [x.offset for x in got] == list(range(10, 30))
    first = got[0]
    assert (first.topic, first.partition, first.key, first.value) == (topic, 1, b"k10", b"v10")
    assert first.timestamp == STAMP_MS + 10
    assert (first.serialized_key_size, first.serialized_value_size) == (3, 3)
    assert max(len(rs) for arrival in r.arrivals for _, _, rs in arrival) <= 7
    assert {e for arrival in r.arrivals for _, e, _ in arrival} == {r.intake.epoch(tp)}
    await r.until(lambda: r.intake.highwater(tp) == 30)
    assert r.intake.highwater(TP(topic, 0)) is None  # never assigned: not known


def test_records_after_an_unassignment_never_come_and_a_reassignment_reads_again_under_a_new_epoch(
        kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=1)
    tp = TP(topic, 0)
    publish(kafka_bootstrap, topic, 10)
    with_reader(kafka_bootstrap, partial(reassign_scenario, kafka_bootstrap, tp))


async def reassign_scenario(kafka_bootstrap: str, tp: TP, r: Reader) -> None:
    topic = tp.topic
    r.intake.assign(tp, None)  # None: from the group's committed offset; it has none: from the log's start
    await r.until(lambda: len(r.records(tp)) >= 10)
    first_epoch = r.intake.epoch(tp)

    r.intake.unassign([tp])
    stale = r.intake.epoch(tp)
    await asyncio.sleep(0.3)  # the reader applies the unassignment between two polls
    publish(kafka_bootstrap, topic, 5, start=10)
    await asyncio.sleep(1.0)
    after_unassign = len(r.records(tp))
    r.intake.assign(tp, 4)
    await r.until(lambda: len(r.records(tp, r.intake.epoch(tp))) >= 11)

    assert first_epoch < stale < r.intake.epoch(tp)
    assert after_unassign == 10
    assert [x.offset for x in r.records(tp, first_epoch)] == list(range(10))
    assert [x.offset for x in r.records(tp, r.intake.epoch(tp))] == list(range(4, 15))


def test_the_reader_stops_while_too_many_records_wait_undelivered_and_goes_on_once_they_are(
        kafka_bootstrap: str, new_topic: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake_module, "MAX_PENDING_BYTES", 20 * (2 + intake_module.RECORD_OVERHEAD))
    topic = new_topic(partitions=1)
    tp = TP(topic, 0)
    publish(kafka_bootstrap, topic, 100)
    with_reader(kafka_bootstrap, partial(backpressure_scenario, tp), max_records=10)


async def backpressure_scenario(tp: TP, r: Reader) -> None:
    r.intake.assign(tp, 0)
    await r.until(lambda: len(r.records(tp)) >= 20)
    await asyncio.sleep(0.5)
    held = len(r.records(tp))
    for arrival in list(r.arrivals):
        r.intake.delivered(arrival)
    await r.until(lambda: len(r.records(tp)) > held)

    assert 20 <= held < 30  # one poll past the limit at most, then nothing until the loop catches up
    assert [x.offset for x in r.records(tp)] == list(range(len(r.records(tp))))


@pytest.mark.unit
def test_merged_joins_each_partitions_records_of_one_epoch_in_order_and_keeps_epochs_apart() -> None:
    a, b = TP("t", 0), TP("t", 1)
    arrival: Arrival = [(a, 1, ["a0", "a1"]), (b, 3, ["b0"]), (a, 1, ["a2"]), (a, 2, ["a5"])]  # type: ignore[list-item]

    got = merged(arrival)

    assert got == [(a, 1, ["a0", "a1", "a2"]), (b, 3, ["b0"]), (a, 2, ["a5"])]
