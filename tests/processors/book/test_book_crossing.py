"""Crossed books at consistency points: counting, and the keep / match / drop-stale policies."""

from __future__ import annotations

import pytest

from tests.processors.book.factory import INST, PUB, Feed, feed, new_book, px
from topics.records import F_LAST, F_TOB, BookTrade, Level

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("book_cls")]


@pytest.fixture
def f() -> Feed:
    return Feed()


def test_crossing_is_judged_only_at_consistency_points(f: Feed) -> None:
    book = new_book()

    feed(book, [f.add("A", px(0), 1, 1, flags=0), f.add("B", px(1), 1, 2, flags=0)])

    assert book.is_crossed()
    assert (book.stats.crossings, book.stats.crossed_now) == (0, False)


def test_keep_counts_and_flags_a_crossed_book_and_leaves_it(f: Feed) -> None:
    book = new_book("keep")

    feed(book, [f.add("A", px(0), 1, 1), f.add("B", px(1), 1, 2)])

    assert book.stats.crossed_now and book.is_crossed()
    assert (book.stats.crossings, book.stats.locked) == (1, 0)
    assert book.order_count == 2


def test_locked_book_counts_as_crossed_and_as_locked(f: Feed) -> None:
    book = new_book("keep")

    feed(book, [f.add("A", px(0), 1, 1), f.add("B", px(0), 1, 2)])

    assert (book.stats.crossings, book.stats.locked) == (1, 1)


def test_crossed_flag_clears_when_the_book_uncrosses(f: Feed) -> None:
    book = new_book("keep")
    feed(book, [f.add("A", px(0), 1, 1), f.add("B", px(1), 1, 2)])

    feed(book, [f.cancel("A", px(0), 1, 1)])

    assert not book.stats.crossed_now
    assert book.stats.crossings == 1


def fills(trades: list[BookTrade]) -> list[tuple[int, int, str, int, bool]]:
    return [(t.price, t.size, t.side, t.order_id, t.synthetic) for t in trades]


def test_match_newer_bid_sweeps_asks_in_price_time_priority(f: Feed) -> None:
    book = new_book("match")
    feed(book, [f.add("A", px(0), 2, 1), f.add("A", px(0), 3, 2), f.add("A", px(1), 3, 3)])

    feed(book, [f.add("B", px(1), 7, 4)])

    assert fills(book.take_trades()) == [
        (px(0), 2, "B", 4, True), (px(0), 3, "B", 4, True), (px(1), 2, "B", 4, True),
    ]
    assert book.bbo() == (None, Level(px(1), 1, 1))
    assert book.order(4) is None
    assert book.stats.synthetic_fills == 3
    assert book.stats.crossed_now and not book.is_crossed()


def test_match_trades_at_the_resting_price_with_the_newer_order_as_aggressor(f: Feed) -> None:
    book = new_book("match")
    feed(book, [f.add("B", px(2), 2, 1)])

    last = f.add("A", px(0), 5, 2)
    feed(book, [last])

    assert book.take_trades() == [BookTrade(
        publisher_id=PUB, instrument_id=INST, ts_event=last.ts_event, ts_recv=last.ts_recv, sequence=last.sequence,
        price=px(2), size=2, side="A", order_id=2, synthetic=True,
    )]
    assert book.bbo() == (None, Level(px(0), 3, 1))


def test_match_replays_crossing_orders_of_both_sides_in_arrival_order(f: Feed) -> None:
    book = new_book("match")
    feed(book, [f.add("B", px(-5), 1, 9, flags=0)])  # outside the crossed region

    feed(book, [f.add("A", px(0), 1, 1, flags=0), f.add("B", px(2), 3, 2, flags=0), f.add("A", px(1), 5, 3)])

    assert fills(book.take_trades()) == [(px(0), 1, "B", 2, True), (px(2), 2, "A", 3, True)]
    assert book.levels("A") == [Level(px(1), 3, 1)]
    assert book.levels("B") == [Level(px(-5), 1, 1)]


def test_match_remainder_keeps_its_time_priority(f: Feed) -> None:
    book = new_book("match")
    feed(book, [f.add("B", px(1), 5, 1, flags=0), f.add("B", px(1), 1, 2, flags=0)])

    feed(book, [f.add("A", px(1), 2, 3)])

    assert book.queue("B", px(1)) == [(1, 3), (2, 1)]


def test_drop_stale_removes_the_older_order_a_newer_one_crosses(f: Feed) -> None:
    book = new_book("drop-stale")
    feed(book, [f.add("A", px(0), 1, 1), f.add("A", px(3), 1, 2)])

    feed(book, [f.add("B", px(1), 4, 3)])

    assert book.bbo() == (Level(px(1), 4, 1), Level(px(3), 1, 1))
    assert book.stats.stale_dropped == 1
    assert book.take_trades() == []


def test_drop_stale_removes_older_bids_crossed_by_a_newer_ask(f: Feed) -> None:
    book = new_book("drop-stale")
    feed(book, [f.add("B", px(2), 1, 1, flags=0), f.add("B", px(1), 1, 2, flags=0), f.add("B", px(-1), 1, 3)])

    feed(book, [f.add("A", px(1), 1, 4)])

    assert book.levels("B") == [Level(px(-1), 1, 1)]
    assert book.levels("A") == [Level(px(1), 1, 1)]


def test_drop_stale_keeps_orders_no_newer_order_crosses(f: Feed) -> None:
    book = new_book("drop-stale")

    feed(book, [f.add("B", px(2), 1, 1, flags=0), f.add("A", px(1), 1, 2, flags=0), f.add("B", px(0), 1, 3)])

    assert book.order(1) is None
    assert book.order(2) == ("A", px(1), 1)
    assert book.order(3) == ("B", px(0), 1)


@pytest.mark.parametrize("policy", ["match", "drop-stale"])
def test_policies_leave_crossed_top_of_book_quotes_alone(f: Feed, policy: str) -> None:
    book = new_book(policy)

    feed(book, [f.add("A", px(0), 1, 0, flags=F_LAST | F_TOB), f.add("B", px(1), 1, 0, flags=F_LAST | F_TOB)])

    assert book.is_crossed()
    assert book.bbo() == (Level(px(1), 1, 0), Level(px(0), 1, 0))
