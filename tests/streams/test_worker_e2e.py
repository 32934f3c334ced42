"""The ESH4 day through `orderflow replay` and a real worker: BBO topic and /books equal the offline engine; bad
frames go to the dead-letter topic with their reasons and leave the books unharmed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.streams.feed import publish_raw, read_all
from tests.streams.harness import Pipeline, first_difference, metric, replay, wait_for
from tests.streams.sessions import ESH4, bbo_key, esh4_records, esh4_reference
from topics.codec import decode, decode_records, encode
from topics.fixed import format_fixed
from topics.records import BboUpdate, BookTrade, DeadLetter, MboFrame, Mbp10Snapshot

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

INSTRUMENT = 17077
KEY = str(INSTRUMENT).encode()


def bad_frames() -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, what the reason must mention): garbage, truncated JSON, wrong schema, inconsistent columns."""
    good = encode(MboFrame.from_records(esh4_records()[:3]))
    short = MboFrame.from_records(esh4_records()[:3])
    inconsistent = encode(MboFrame(**{**{f: getattr(short, f) for f in short.__struct_fields__},
                                      "price": short.price[:2]}))
    return [
        (KEY, b"\x00\xffgarbage", "not valid JSON"),
        (KEY, good[: len(good) // 2], "not valid JSON"),
        (KEY, b'{"instrument_id": 17077, "hello": 1}', "publisher_id"),
        (KEY, inconsistent, "$.price"),
        (KEY, None, "no value"),
    ]


def test_esh4_through_replay_and_a_worker(pipeline_factory: Any) -> None:
    pipeline: Pipeline = pipeline_factory(partitions=4)
    worker = pipeline.start("w1")
    pipeline.wait_healthy(worker)
    bad = bad_frames()
    publish_raw(pipeline.bootstrap, pipeline.topics.frames, [(k, v) for k, v, _ in bad[:2]])
    replay(pipeline, ESH4)
    publish_raw(pipeline.bootstrap, pipeline.topics.frames, [(k, v) for k, v, _ in bad[2:]])
    expected, books = esh4_reference()
    wait_for("every record applied and the dead letters out", lambda: (
        metric(m := worker.metrics(), "orderflow_book_records_applied_total") == len(esh4_records())
        and metric(m, "orderflow_book_dead_letters_total") == len(bad)))
    pipeline.stop(worker)  # its last checkpoint and the producer flush: every output is in its topic now

    bbo = [b for _, _, _, v in read_all(pipeline.bootstrap, pipeline.topics.bbo) for b in decode_records(BboUpdate, v)]
    got = [bbo_key(b) for b in bbo]
    assert got == expected, first_difference(got, expected)
    assert not any(b.duplicate for b in bbo)
    trades = [t for _, _, _, v in read_all(pipeline.bootstrap, pipeline.topics.trades)
              for t in decode_records(BookTrade, v)]
    assert len(trades) == sum(1 for r in esh4_records() if r.action == "T")
    snaps = [decode(Mbp10Snapshot, v) for _, _, _, v in read_all(pipeline.bootstrap, pipeline.topics.mbp10)]
    last = books[INSTRUMENT]
    assert snaps[-1].bids == last.levels("B", 10) and snaps[-1].asks == last.levels("A", 10)

    letters = [decode(DeadLetter, v) for _, _, _, v in read_all(pipeline.bootstrap, pipeline.topics.deadletter)]
    assert [(d.key, d.value) for d in letters] == [(k, v or b"") for k, v, _ in bad]
    for letter, (_, _, why) in zip(letters, bad, strict=True):
        assert why in letter.reason
        assert letter.topic == pipeline.topics.frames and letter.stage == "book-agent"
        assert letter.partition >= 0 and letter.offset >= 0


def test_final_book_view_equals_the_offline_book(pipeline_factory: Any) -> None:
    pipeline: Pipeline = pipeline_factory(partitions=2)
    worker = pipeline.start("w1")
    pipeline.wait_healthy(worker)
    replay(pipeline, ESH4)
    wait_for("every record applied", lambda: metric(
        worker.metrics(), "orderflow_book_records_applied_total") == len(esh4_records()))
    _, books = esh4_reference()
    offline = books[INSTRUMENT]
    status, doc = worker.book(INSTRUMENT, depth=1000)
    assert status == 200
    for side, key in (("B", "bids"), ("A", "asks")):
        levels = offline.levels(side, 1000)
        assert [(lv["price_raw"], lv["size"], lv["count"]) for lv in doc[key]] == [
            (lv.price, lv.size, lv.count) for lv in levels]
        assert [lv["price"] for lv in doc[key]] == [format_fixed(lv.price) for lv in levels]
    assert doc["orders"] == offline.order_count == 11_217
    assert doc["bid"]["price"] == "4810" and doc["ask"]["price"] == "4810.25"
    summary = worker.books()
    assert summary["ready"] and [b["instrument_id"] for b in summary["books"]] == [INSTRUMENT]
    assert summary["books"][0]["stats"]["records"] == len(esh4_records())
    assert worker.book(99, depth=5)[0] == 404 and worker.book(INSTRUMENT, depth=0)[0] == 400
    page = worker.metrics()
    for name in ("orderflow_book_apply_seconds_count", "orderflow_book_recv_to_publish_seconds_count",
                 "orderflow_book_sent_to_publish_seconds_count", "orderflow_book_consumer_lag",
                 'orderflow_book_anomalies_total{kind="crossed"}', "orderflow_book_dead_letters_total"):
        assert name in page, name
