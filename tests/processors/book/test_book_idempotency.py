"""Replaying already applied records changes nothing, while distinct records sharing a sequence all apply."""

from __future__ import annotations

import pytest

from processors.book import Book
from tests.processors.book.factory import Feed, feed, new_book, px
from topics.records import F_BAD_TS_RECV, F_LAST, F_SNAPSHOT, UNDEF_PRICE, MboRecord

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("book_cls")]

SNAP = F_SNAPSHOT | F_BAD_TS_RECV


def book_part(book: Book) -> tuple[object, object]:
    state = book.to_state()
    return state.bids, state.asks


def execution(f: Feed, seq: int) -> list[MboRecord]:
    """One XNAS-like execution: trade, fill and cancel share a sequence and a timestamp."""
    ts = f.rec("N").ts_recv + 10
    return [
        f.rec("T", "B", px(1), 2, 9, flags=0, sequence=seq, ts=ts),
        f.rec("F", "A", px(1), 2, 1, flags=0, sequence=seq, ts=ts),
        f.cancel("A", px(1), 2, 1, sequence=seq, ts=ts),
    ]


def test_records_sharing_a_sequence_all_apply() -> None:
    f = Feed()
    book = new_book()
    feed(book, [f.add("A", px(1), 5, 1, sequence=10)])

    feed(book, execution(f, 11))

    assert book.order(1) == ("A", px(1), 3)
    assert book.stats.duplicates_skipped == 0


def test_identical_fills_within_one_sequence_are_not_duplicates() -> None:
    f = Feed()
    book = new_book()
    ts = 5_000_000
    fill = f.rec("F", "A", px(1), 1, 1, flags=0, sequence=20, ts=ts)
    records = [
        f.rec("T", "B", px(1), 1, 7, flags=0, sequence=20, ts=ts), fill,
        f.rec("T", "B", px(1), 1, 8, flags=0, sequence=20, ts=ts), fill,
    ]

    feed(book, records)

    assert book.stats.duplicates_skipped == 0
    assert book.stats.by_action == {"T": 2, "F": 2}


def test_replaying_a_whole_stream_skips_every_record() -> None:
    f = Feed()
    records = [f.add("B", px(0), 5, 1, sequence=10), f.add("A", px(2), 5, 2, sequence=11), *execution(f, 12)]
    book = new_book()
    feed(book, records)
    before = book_part(book)

    results = feed(book, records)

    assert results == [False] * len(records)
    assert book_part(book) == before
    assert book.stats.duplicates_skipped == len(records)


def test_replay_starting_at_the_last_sequence_is_skipped() -> None:
    f = Feed()
    book = new_book()
    feed(book, [f.add("A", px(1), 5, 1, sequence=10)])
    group = execution(f, 11)
    feed(book, group)

    feed(book, group)

    assert book.order(1) == ("A", px(1), 3)
    assert book.stats.duplicates_skipped == 3


def test_replay_restarting_at_an_event_inside_a_packet_is_skipped() -> None:
    """CME packets carry several F_LAST events under one sequence; replays restart at an event (frame) start."""
    f = Feed()
    book = new_book()
    packet = [
        f.add("B", px(0), 1, 1, sequence=30), f.add("B", px(0), 1, 2, sequence=30),
        f.add("B", px(-1), 1, 3, sequence=30, flags=0), f.add("B", px(-1), 1, 4, sequence=30),
    ]
    feed(book, packet)

    feed(book, packet[2:])

    assert book.order_count == 4
    assert book.stats.duplicates_skipped == 2


def test_new_records_after_a_replay_apply() -> None:
    f = Feed()
    book = new_book()
    first = [f.add("B", px(0), 1, 1, sequence=40), f.add("B", px(0), 1, 2, sequence=40)]
    feed(book, first)
    feed(book, first)  # replay

    feed(book, [f.add("B", px(0), 1, 3, sequence=40), f.add("B", px(0), 1, 4, sequence=41)])

    assert book.queue("B", px(0)) == [(1, 1), (2, 1), (3, 1), (4, 1)]


def test_lower_sequence_is_a_duplicate() -> None:
    f = Feed()
    book = new_book()
    feed(book, [f.add("B", px(0), 1, 1, sequence=50)])

    feed(book, [f.add("B", px(0), 1, 2, sequence=49)])

    assert book.order(2) is None
    assert book.stats.duplicates_skipped == 1


def test_duplicate_with_f_last_is_not_a_new_consistency_point() -> None:
    f = Feed()
    book = new_book()
    rec = f.add("B", px(0), 1, 1, sequence=60)
    feed(book, [rec])

    assert book.apply(rec) is False
    assert book.stats.consistency_points == 1


def test_unsequenced_exact_repeat_of_the_previous_record_is_a_duplicate() -> None:
    f = Feed()
    book = new_book()
    a = f.add("B", px(0), 1, 1, sequence=0)

    feed(book, [a, a])

    assert book.stats.duplicates_skipped == 1


def test_unsequenced_records_are_otherwise_applied() -> None:
    f = Feed()
    book = new_book()
    a, c = f.add("B", px(0), 3, 1, sequence=0), f.cancel("B", px(0), 1, 1, sequence=0)

    feed(book, [a, c, f.add("B", px(0), 1, 2, sequence=0), c])

    assert book.order(1) == ("B", px(0), 1)
    assert book.stats.duplicates_skipped == 0


def test_channels_keep_their_own_sequences() -> None:
    f = Feed()
    book = new_book()

    feed(book, [f.add("B", px(0), 1, 1, sequence=100, channel_id=0), f.add("B", px(0), 1, 2, sequence=5, channel_id=1)])

    assert book.order_count == 2


def test_replayed_clear_is_skipped() -> None:
    f = Feed()
    book = new_book()
    clear = f.rec("R", "N", UNDEF_PRICE, 0, 0, sequence=0)
    feed(book, [clear, f.add("B", px(0), 1, 1, sequence=10)])

    feed(book, [clear])

    assert book.order_count == 1
    assert book.stats.clears == 1


def test_a_later_clear_applies_and_restarts_sequences() -> None:
    f = Feed()
    book = new_book()
    feed(book, [f.add("B", px(0), 1, 1, sequence=900)])

    feed(book, [f.rec("R", sequence=0), f.add("A", px(2), 1, 2, sequence=3)])

    assert (book.order(1), book.order(2)) == (None, ("A", px(2), 1))


def snapshot(f: Feed, ts: int, orders: list[tuple[str, int, int, int]], last: bool = True) -> list[MboRecord]:
    recs = [f.add(side, price, size, oid, flags=SNAP, sequence=7, ts=ts) for side, price, size, oid in orders]
    if last:
        recs[-1] = f.add(*orders[-1], flags=SNAP | F_LAST, sequence=7, ts=ts)
    return recs


def test_snapshot_replayed_after_live_data_is_skipped() -> None:
    f = Feed()
    book = new_book()
    snap = snapshot(f, 1_000, [("B", px(0), 1, 1), ("A", px(2), 1, 2)], last=False)
    feed(book, [*snap, f.cancel("B", px(0), 1, 1, sequence=500, ts=2_000)])

    feed(book, snap)

    assert (book.order(1), book.order_count) == (None, 1)
    assert book.stats.duplicates_skipped == 2


def test_snapshot_alone_replayed_at_the_same_time_is_skipped() -> None:
    f = Feed()
    book = new_book()
    snap = snapshot(f, 1_000, [("B", px(0), 1, 1), ("B", px(0), 2, 2)])
    feed(book, snap)

    feed(book, snap)

    assert book.queue("B", px(0)) == [(1, 1), (2, 2)]
    assert book.stats.duplicates_skipped == 2


def test_new_snapshot_without_clear_replaces_the_book_and_restarts_sequences() -> None:
    f = Feed()
    book = new_book()
    feed(book, [*snapshot(f, 1_000, [("B", px(0), 1, 1)]), f.add("B", px(-1), 1, 2, sequence=900, ts=2_000)])

    feed(book, [*snapshot(f, 3_000, [("A", px(3), 4, 3)]), f.add("A", px(4), 1, 4, sequence=8, ts=3_001)])

    assert book.levels("B") == []
    assert [lv.price for lv in book.levels("A")] == [px(3), px(4)]
    assert book.stats.snapshots == 2


def test_snapshot_after_clear_keeps_priority_order() -> None:
    f = Feed()
    book = new_book()
    feed(book, [f.add("B", px(0), 9, 99, sequence=5, ts=5_000)])

    feed(book, [f.rec("R", flags=SNAP, sequence=0, ts=10_000),
                *snapshot(f, 10_000, [("B", px(0), 1, 3), ("B", px(0), 1, 1), ("B", px(0), 1, 2)])])

    assert book.queue("B", px(0)) == [(3, 1), (1, 1), (2, 1)]
    assert (book.stats.clears, book.stats.snapshots) == (1, 1)


def test_replay_spanning_a_clear_is_skipped_even_before_new_records() -> None:
    f = Feed()
    book = new_book()
    before_clear = [f.add("B", px(0), 1, 1, sequence=10), f.add("B", px(0), 1, 2, sequence=11)]
    clear = f.rec("R", sequence=0)
    feed(book, [*before_clear, clear])

    feed(book, [*before_clear, clear])

    assert book.order_count == 0
    assert book.stats.duplicates_skipped == 3


def test_cancel_flagged_snapshot_is_an_ordinary_cancel() -> None:
    f = Feed()
    book = new_book()
    feed(book, [f.add("B", px(0), 1, 1, sequence=10), f.add("B", px(0), 1, 2, sequence=11)])

    feed(book, [f.cancel("B", px(0), 1, 1, flags=F_LAST | F_SNAPSHOT, sequence=12)])

    assert book.queue("B", px(0)) == [(2, 1)]
