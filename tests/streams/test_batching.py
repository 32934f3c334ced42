"""Batches of records as one Faust message: how they are cut, what they carry, and that acking one acks each record
the way Faust's own ack does (the committed offset moves past the whole batch, and only then)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.batching import BatchMessage, chunks, records_of
from streams.transport import BookApp

pytestmark = pytest.mark.unit

TOPIC = "ticks.trades"
PART = TP(TOPIC, 3)


def record(offset: int) -> ConsumerMessage:
    return ConsumerMessage(TOPIC, 3, offset, 1.7e9, 0, [], b"k%d" % offset, b"v%d" % offset, None, tp=PART,
                           generation_id=7)


def consumer(tmp_path: Path) -> Any:
    app = BookApp("batching-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path), autodiscover=False)
    app.topics._acking_topics.add(TOPIC)  # what the conductor does for an agent's topic when it subscribes
    return app.consumer


def test_chunks_cut_runs_of_at_most_the_limit_and_leave_a_lone_record_alone() -> None:
    messages = [record(o) for o in range(10, 22)]

    parts = list(chunks(messages, 5))
    lone = list(chunks(messages[:1], 5))

    assert [[m.offset for m in records_of(p)] for p in parts] == [list(range(10, 15)), list(range(15, 20)), [20, 21]]
    assert all(isinstance(p, BatchMessage) for p in parts)
    assert lone == messages[:1] and records_of(lone[0]) == messages[:1]


def test_a_batch_message_carries_the_fields_of_its_last_record() -> None:
    messages = [record(o) for o in (40, 41, 42)]

    batch = BatchMessage(messages)

    assert (batch.topic, batch.partition, batch.offset, batch.tp) == (TOPIC, 3, 42, PART)
    assert (batch.key, batch.value, batch.generation_id) == (b"k42", b"v42", 7)
    assert batch.messages == messages


def test_acking_a_batch_acks_every_record_and_the_commit_passes_the_whole_batch(tmp_path: Path) -> None:
    kafka = consumer(tmp_path)
    kafka._committed_offset[PART] = 100
    first, second = BatchMessage([record(o) for o in range(100, 105)]), BatchMessage([record(o) for o in (105, 106)])
    for batch in (first, second):
        batch.incref()

    assert kafka._new_offset(PART) is None  # nothing acked yet: nothing to commit
    second.ack(kafka)  # acked out of order: the commit must still wait for the first batch
    waiting = kafka._new_offset(PART)
    first.ack(kafka)

    assert waiting is None
    assert kafka._new_offset(PART) == 107
    assert all(m.acked for m in first.messages + second.messages)
    assert first.ack(kafka) is False  # a second ack changes nothing


def test_records_below_the_committed_offset_are_not_acked_again(tmp_path: Path) -> None:
    kafka = consumer(tmp_path)
    kafka._committed_offset[PART] = 203
    batch = BatchMessage([record(o) for o in range(200, 206)])
    batch.incref()

    batch.ack(kafka)

    assert sorted(kafka._acked[PART]) == [203, 204, 205]
