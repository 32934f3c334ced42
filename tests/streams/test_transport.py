"""The workers' seek back to the committed offsets, on the real broker: a source partition with nothing committed
(or 0) goes back to the log start, as one with a commit goes back to it, whatever its fetches had read; a partition
that is no agent's source (a changelog) stays where it was."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from confluent_kafka import Producer

from streams.transport import seek_to_committed

pytestmark = pytest.mark.integration

RECORDS = 20
LEFT = 3  # where the fetches left every partition before the seek back


def fill(bootstrap: str, topic: str, partitions: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition in range(partitions):
        for n in range(RECORDS):
            producer.produce(topic, b"v%d" % n, partition=partition)
    assert producer.flush(30) == 0


async def read_all_then_seek(bootstrap: str, commits: dict[TopicPartition, int], tps: list[TopicPartition],
                             sources: Callable[[str], bool], reset: str = "earliest"
                             ) -> tuple[dict[Any, int | None], dict[TopicPartition, int]]:
    """Read every record of ``tps``, leave each partition at ``LEFT``, commit ``commits``, seek back: what the
    seek returned and the position of each partition after it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"seek-{tps[0].topic}",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(tps)
        got = 0
        while got < RECORDS * len(tps):
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, "the records did not come"
            got += sum(len(v) for v in batch.values())
        for tp in tps:
            consumer.seek(tp, LEFT)
        if commits:
            await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in commits.items()})

        committed = await seek_to_committed(consumer, reset, sources)
        return committed, {tp: await consumer.position(tp) for tp in tps}
    finally:
        await consumer.stop()


def test_source_partitions_without_a_commit_go_back_to_the_log_start(kafka_bootstrap: str,
                                                                     new_topic: Callable[..., str]) -> None:
    # Arrange: four partitions read to the end; commits 7 on one, 0 on another, none on two; all left at 3
    topic = new_topic(partitions=4)
    fill(kafka_bootstrap, topic, 4)
    tps = [TopicPartition(topic, p) for p in range(4)]

    # Act
    committed, position = asyncio.run(read_all_then_seek(
        kafka_bootstrap, {tps[0]: 7, tps[1]: 0}, tps, sources=lambda name: name == topic))

    # Assert
    assert position == {tps[0]: 7, tps[1]: 0, tps[2]: 0, tps[3]: 0}
    assert committed[tps[0]] == 7 and committed[tps[2]] is None


def test_with_reset_latest_they_go_to_the_log_end(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=2)
    fill(kafka_bootstrap, topic, 2)
    tps = [TopicPartition(topic, p) for p in range(2)]

    _, position = asyncio.run(read_all_then_seek(kafka_bootstrap, {tps[0]: 3}, tps, lambda name: True, "latest"))

    assert position == {tps[0]: 3, tps[1]: RECORDS}


def test_partitions_of_other_topics_stay_where_their_fetches_left_them(kafka_bootstrap: str,
                                                                       new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=2)
    fill(kafka_bootstrap, topic, 2)
    tps = [TopicPartition(topic, p) for p in range(2)]

    _, position = asyncio.run(read_all_then_seek(kafka_bootstrap, {tps[0]: 5}, tps, lambda name: False))

    assert position == {tps[0]: 5, tps[1]: LEFT}  # aiokafka's own seek still applies to a commit above 0
