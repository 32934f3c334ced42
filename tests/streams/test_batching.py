"""Batches of records as one Faust message: how they are cut, what they carry, and that acking one acks each record
the way Faust's own ack does (the committed offset moves past the whole batch, and only then)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.batching import BatchMessage, chunks, records_of
from streams.transport import BookApp

pytestmark = pytest.mark.unit

TOPIC = "ticks.trades"
PART = TP(TOPIC, 3)


def record(offset: int) -> ConsumerRecord[bytes, bytes]:
    """A record as aiokafka's fetch hands it over."""
    return ConsumerRecord(TOPIC, 3, offset, 1_700_000_000_000, 0, b"k%d" % offset, b"v%d" % offset, None, 2, 2, [])


def to_message(rec: ConsumerRecord[bytes, bytes]) -> ConsumerMessage:
    """What Faust's aiokafka driver makes of a record (``Consumer._to_message``)."""
    return ConsumerMessage(rec.topic, rec.partition, rec.offset, rec.timestamp / 1000, rec.timestamp_type, [],
                           rec.key, rec.value, None, tp=PART, generation_id=7)


def batch_of(offsets: range | tuple[int, ...]) -> BatchMessage:
    records = [record(o) for o in offsets]
    return BatchMessage(to_message(records[-1]), records)


def consumer(tmp_path: Path) -> Any:
    app = BookApp("batching-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path), autodiscover=False)
    app.topics._acking_topics.add(TOPIC)  # what the conductor does for an agent's topic when it subscribes
    return app.consumer


def test_chunks_cut_runs_of_at_most_the_limit_and_a_lone_record_becomes_a_faust_message() -> None:
    records = [record(o) for o in range(10, 22)]

    parts = list(chunks(records, 5, to_message))
    tail = list(chunks(records[:6], 5, to_message))

    assert [[m.offset for m in records_of(p)] for p in parts] == [list(range(10, 15)), list(range(15, 20)), [20, 21]]
    assert all(isinstance(p, BatchMessage) for p in parts)
    assert isinstance(tail[0], BatchMessage) and not isinstance(tail[1], BatchMessage)
    assert (tail[1].offset, tail[1].value) == (15, b"v15") and records_of(tail[1]) == [tail[1]]


def test_a_batch_message_carries_the_fields_of_its_last_record_and_the_records_themselves() -> None:
    records = [record(o) for o in (40, 41, 42)]

    batch = BatchMessage(to_message(records[-1]), records)

    assert (batch.topic, batch.partition, batch.offset, batch.tp) == (TOPIC, 3, 42, PART)
    assert (batch.key, batch.value, batch.generation_id) == (b"k42", b"v42", 7)
    assert records_of(batch) == records


def test_acking_a_batch_acks_every_record_and_the_commit_passes_the_whole_batch(tmp_path: Path) -> None:
    kafka = consumer(tmp_path)
    kafka._committed_offset[PART] = 100
    first, second = batch_of(range(100, 105)), batch_of((105, 106))
    for batch in (first, second):
        batch.incref()

    assert kafka._new_offset(PART) is None  # nothing acked yet: nothing to commit
    second.ack(kafka)  # acked out of order: the commit must still wait for the first batch
    waiting = kafka._new_offset(PART)
    first.ack(kafka)

    assert waiting is None
    assert kafka._new_offset(PART) == 107
    assert first.acked and second.acked
    assert first.ack(kafka) is False  # a second ack changes nothing


def test_records_below_the_committed_offset_are_not_acked_again(tmp_path: Path) -> None:
    kafka = consumer(tmp_path)
    kafka._committed_offset[PART] = 203
    batch = batch_of(range(200, 206))
    batch.incref()

    batch.ack(kafka)

    assert sorted(kafka._acked[PART]) == [203, 204, 205]


def test_admission_drops_records_already_read_and_notes_skipped_offsets_as_gaps(tmp_path: Path) -> None:
    kafka = consumer(tmp_path)
    kafka._committed_offset[PART] = 5
    kafka._read_offset[PART] = 9  # a seek went back: the fetch starts before what was read

    admitted = asyncio.run(kafka._admit(PART, [record(o) for o in (7, 8, 9, 10, 11, 14, 15)]))

    assert [r.offset for r in admitted] == [9, 10, 11, 14, 15]
    assert kafka._read_offset[PART] == 15
    assert [(i.begin, i.end) for i in sorted(kafka._gap[PART])] == [(12, 15)]  # as Faust's own _add_gap(12, 14)


def test_admission_of_a_contiguous_fetch_adds_no_gap(tmp_path: Path) -> None:
    kafka = consumer(tmp_path)
    kafka._committed_offset[PART] = 5
    kafka._read_offset[PART] = 9

    admitted = asyncio.run(kafka._admit(PART, [record(o) for o in range(10, 20)]))

    assert [r.offset for r in admitted] == list(range(10, 20))
    assert kafka._read_offset[PART] == 19 and not kafka._gap[PART]
