"""Frame -> outputs: BBO only on change, at consistency points; trades; anomalies; MBP-10 throttling."""

from __future__ import annotations

import pytest

from processors.book import Book
from streams.publisher import OutputTopics, TrackedBook
from tests.streams.sessions import bbo_key, esh4_records, esh4_reference, frames
from topics.codec import decode
from topics.records import (
    F_LAST,
    F_MAYBE_BAD_BOOK,
    BboUpdate,
    BookAnomaly,
    BookTrade,
    MboFrame,
    MboRecord,
    Mbp10Snapshot,
)

pytestmark = pytest.mark.unit
TOPICS = OutputTopics()
PX = 1_000_000_000


def rec(action: str, side: str, price: int, size: int, oid: int, seq: int, flags: int = F_LAST) -> MboRecord:
    return MboRecord(ts_recv=1_000 + seq, ts_event=900 + seq, publisher_id=1, instrument_id=7, action=action,  # type: ignore[arg-type]
                     side=side, price=price * PX, size=size, order_id=oid, flags=flags, sequence=seq)  # type: ignore[arg-type]


def run(records: list[MboRecord], tracked: TrackedBook | None = None, offset: int = 0,
        duplicate: bool = False) -> tuple[TrackedBook, list[tuple[str, bytes, bytes]]]:
    tracked = tracked or TrackedBook(Book(1, 7), TOPICS)
    out: list[tuple[str, bytes, bytes]] = []
    tracked.apply_frame(MboFrame.from_records(records), offset, duplicate, out)
    return tracked, out


def of(out: list[tuple[str, bytes, bytes]], topic: str, kind: type) -> list:
    return [decode(kind, value) for t, _, value in out if t == topic]


def test_bbo_published_only_when_the_top_changes() -> None:
    _, out = run([
        rec("A", "B", 100, 5, 1, 1),
        rec("A", "A", 101, 3, 2, 2),
        rec("A", "B", 99, 7, 3, 3),  # below the best bid: top unchanged
        rec("A", "B", 100, 1, 4, 4),  # joins the best bid: size and count change
    ])
    bbos = of(out, TOPICS.bbo, BboUpdate)
    assert [(b.sequence, b.bid_px, b.bid_sz, b.bid_ct, b.ask_px) for b in bbos] == [
        (1, 100 * PX, 5, 1, None), (2, 100 * PX, 5, 1, 101 * PX), (4, 100 * PX, 6, 2, 101 * PX),
    ]
    assert all(key == b"7" for t, key, _ in out)
    assert bbos[-1].ts_recv == 1_004 and not bbos[-1].duplicate


def test_bbo_only_at_consistency_points() -> None:
    _, out = run([rec("A", "B", 100, 5, 1, 1, flags=0), rec("A", "A", 101, 3, 2, 1, flags=0),
                  rec("C", "B", 100, 5, 1, 1, flags=F_LAST)])
    assert [(b.bid_px, b.ask_px) for b in of(out, TOPICS.bbo, BboUpdate)] == [(None, 101 * PX)]


def test_outputs_of_a_replayed_frame_are_marked_duplicate() -> None:
    _, out = run([rec("A", "B", 100, 5, 1, 1), rec("T", "A", 100, 1, 0, 2)], duplicate=True)
    assert of(out, TOPICS.bbo, BboUpdate)[0].duplicate
    assert of(out, TOPICS.trades, BookTrade)[0].duplicate


def test_trades_crossings_and_counter_anomalies() -> None:
    tracked, out = run([
        rec("A", "B", 100, 5, 1, 1), rec("A", "A", 99, 3, 2, 2),  # crossed
        rec("T", "A", 99, 3, 0, 3),
        rec("C", "A", 99, 3, 2, 4),  # uncrossed
        rec("C", "B", 50, 1, 999, 5, flags=F_LAST | F_MAYBE_BAD_BOOK),  # unknown order
    ])
    kinds = [(a.kind, a.count) for a in of(out, TOPICS.anomalies, BookAnomaly)]
    assert ("crossed", 2) in kinds and ("uncrossed", 2) in kinds
    assert ("unknown_cancel", 1) in kinds and ("maybe_bad_book", 1) in kinds
    assert [t.size for t in of(out, TOPICS.trades, BookTrade)] == [3]
    assert of(out, TOPICS.bbo, BboUpdate)[1].crossed
    assert tracked.tally["crossed"] == 2 and tracked.tally["uncrossed"] == 1


def test_gap_anomaly_when_enabled() -> None:
    tracked = TrackedBook(Book(1, 7), TOPICS, gap_threshold=10)
    _, out = run([rec("A", "B", 100, 5, 1, 1), rec("A", "B", 100, 5, 2, 5), rec("A", "B", 100, 5, 3, 50)], tracked)
    gaps = [a for a in of(out, TOPICS.anomalies, BookAnomaly) if a.kind == "gap"]
    assert [(g.sequence, g.count) for g in gaps] == [(50, 44)]


def test_mbp10_throttled_and_always_the_latest() -> None:
    tracked, _ = run([rec("A", "B", 100, 5, 1, 1)])
    assert tracked.mbp10_due(now=10.0, interval=1.0)
    snap = decode(Mbp10Snapshot, tracked.take_mbp10(10.0)[2])
    assert [lv.price for lv in snap.bids] == [100 * PX] and snap.sequence == 1
    run([rec("A", "B", 101, 1, 2, 2)], tracked, offset=1)
    assert not tracked.mbp10_due(now=10.5, interval=1.0)  # within the interval
    assert tracked.mbp10_due(now=11.0, interval=1.0)
    snap = decode(Mbp10Snapshot, tracked.take_mbp10(11.0)[2])
    assert [lv.price for lv in snap.bids] == [101 * PX, 100 * PX] and snap.sequence == 2
    assert not tracked.mbp10_due(now=20.0, interval=1.0)  # unchanged since


def test_mbp10_waits_for_a_consistent_book() -> None:
    tracked, _ = run([rec("A", "B", 100, 5, 1, 1), rec("A", "B", 101, 5, 2, 2, flags=0)])
    assert not tracked.mbp10_due(now=10.0, interval=1.0)


@pytest.mark.parametrize("max_records", [3, 250])
def test_esh4_bbo_changes_equal_the_offline_engine(max_records: int) -> None:
    records = esh4_records()
    expected, books = esh4_reference()
    tracked = TrackedBook(Book(1, 17077), TOPICS)
    out: list[tuple[str, bytes, bytes]] = []
    for offset, frame in enumerate(frames(records, max_records)):
        tracked.apply_frame(frame, offset, False, out)
    assert [bbo_key(b) for b in of(out, TOPICS.bbo, BboUpdate)] == expected
    assert tracked.book.to_state() == books[17077].to_state()
    assert len(of(out, TOPICS.trades, BookTrade)) == sum(1 for r in records if r.action == "T")
