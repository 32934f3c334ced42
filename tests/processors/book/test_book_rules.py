"""Databento's MBO book rules, one behaviour per test, on hand-made records."""

from __future__ import annotations

import msgspec
import pytest

from processors.book import Book, BookError, BookState, PolicyError, SideError, StateError, WrongBookError
from tests.processors.book.factory import INST, PUB, Feed, feed, new_book, px
from topics.records import F_LAST, F_MAYBE_BAD_BOOK, F_MBP, F_TOB, UNDEF_PRICE, BookTrade, Level, MboRecord

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("book_cls")]


@pytest.fixture
def f() -> Feed:
    return Feed()


def test_adds_queue_in_arrival_order_and_aggregate_levels(f: Feed) -> None:
    book = new_book()

    feed(book, [f.add("B", px(0), 2, 1), f.add("B", px(0), 3, 2), f.add("B", px(-1), 5, 3), f.add("A", px(2), 7, 4)])

    assert book.bbo() == (Level(px(0), 5, 2), Level(px(2), 7, 1))
    assert book.levels("B") == [Level(px(0), 5, 2), Level(px(-1), 5, 1)]
    assert book.queue("B", px(0)) == [(1, 2), (2, 3)]
    assert book.order(3) == ("B", px(-1), 5)
    assert book.order_count == 4


def test_levels_are_best_first_and_limited_to_depth(f: Feed) -> None:
    book = new_book()
    feed(book, [f.add("A", px(i), 1, 100 + i) for i in range(5, 0, -1)])
    feed(book, [f.add("B", px(-i), 1, 200 + i) for i in range(1, 6)])

    asks, bids = book.levels("A", depth=3), book.levels("B", depth=2)

    assert [lv.price for lv in asks] == [px(1), px(2), px(3)]
    assert [lv.price for lv in bids] == [px(-1), px(-2)]
    assert book.levels("A", depth=0) == []


def test_depth_of_counts_from_the_best_price(f: Feed) -> None:
    book = new_book()
    feed(book, [f.add("B", px(-i), 1, i) for i in range(3)] + [f.add("A", px(i), 1, 10 + i) for i in range(1, 4)])

    assert (book.depth_of("B", px(0)), book.depth_of("B", px(-2))) == (0, 2)
    assert (book.depth_of("A", px(1)), book.depth_of("A", px(3))) == (0, 2)
    assert book.depth_of("A", px(7)) is None


def test_partial_cancel_keeps_priority_and_full_cancel_removes(f: Feed) -> None:
    book = new_book()
    feed(book, [f.add("A", px(1), 5, 1), f.add("A", px(1), 5, 2)])

    feed(book, [f.cancel("A", px(1), 2, 1)])
    assert book.queue("A", px(1)) == [(1, 3), (2, 5)]

    feed(book, [f.cancel("A", px(1), 3, 1)])
    assert book.queue("A", px(1)) == [(2, 5)]
    assert book.order(1) is None


def test_cancelling_the_last_order_removes_the_level_and_moves_the_best(f: Feed) -> None:
    book = new_book()
    feed(book, [f.add("B", px(0), 1, 1), f.add("B", px(-2), 4, 2)])

    feed(book, [f.cancel("B", px(0), 1, 1)])

    assert book.bbo() == (Level(px(-2), 4, 1), None)
    assert book.depth_of("B", px(0)) is None


def test_over_cancel_removes_the_order_and_is_counted(f: Feed) -> None:
    book = new_book()
    feed(book, [f.add("A", px(1), 2, 1)])

    feed(book, [f.cancel("A", px(1), 5, 1)])

    assert book.order(1) is None
    assert book.stats.over_cancels == 1


def test_unknown_cancel_is_counted_and_changes_nothing(f: Feed) -> None:
    book = new_book()
    feed(book, [f.add("A", px(1), 2, 1)])

    feed(book, [f.cancel("A", px(1), 1, 999)])

    assert book.queue("A", px(1)) == [(1, 2)]
    assert book.stats.unknown_cancels == 1


def test_modify_of_unknown_order_adds_it_and_is_counted(f: Feed) -> None:
    book = new_book()

    feed(book, [f.modify("B", px(0), 4, 7)])

    assert book.order(7) == ("B", px(0), 4)
    assert book.stats.unknown_modifies == 1


def test_modify_size_down_keeps_priority(f: Feed) -> None:
    book = new_book()
    feed(book, [f.add("B", px(0), 5, 1), f.add("B", px(0), 5, 2)])

    feed(book, [f.modify("B", px(0), 3, 1)])

    assert book.queue("B", px(0)) == [(1, 3), (2, 5)]
    assert book.bbo()[0] == Level(px(0), 8, 2)


def test_modify_size_up_loses_priority(f: Feed) -> None:
    book = new_book()
    feed(book, [f.add("B", px(0), 5, 1), f.add("B", px(0), 5, 2)])

    feed(book, [f.modify("B", px(0), 6, 1)])

    assert book.queue("B", px(0)) == [(2, 5), (1, 6)]


def test_modify_price_moves_to_the_back_of_the_new_level(f: Feed) -> None:
    book = new_book()
    feed(book, [f.add("A", px(1), 5, 1), f.add("A", px(2), 5, 2)])

    feed(book, [f.modify("A", px(2), 1, 1)])

    assert book.queue("A", px(2)) == [(2, 5), (1, 1)]
    assert book.depth_of("A", px(1)) is None
    assert book.bbo()[1] == Level(px(2), 6, 2)


def test_modify_to_size_zero_removes_the_order(f: Feed) -> None:
    book = new_book()
    feed(book, [f.add("A", px(1), 5, 1)])

    feed(book, [f.modify("A", px(1), 0, 1)])

    assert book.order(1) is None
    assert book.order_count == 0


def test_clear_empties_the_book(f: Feed) -> None:
    book = new_book()
    feed(book, [f.add("A", px(1), 5, 1), f.add("B", px(0), 5, 2)])

    feed(book, [f.rec("R")])

    assert book.bbo() == (None, None)
    assert book.order_count == 0
    assert book.stats.clears == 1


@pytest.mark.parametrize("action", ["T", "F", "N"])
def test_trade_fill_and_none_do_not_change_the_book(f: Feed, action: str) -> None:
    book = new_book()
    feed(book, [f.add("A", px(1), 5, 1)])
    before = book.to_state()

    feed(book, [f.rec(action, "A", px(1), 5, 1)])

    after = book.to_state()
    assert (after.bids, after.asks) == (before.bids, before.asks)


def test_trades_are_drained_by_take_trades(f: Feed) -> None:
    book = new_book()
    t1 = f.rec("T", "B", px(1), 2, 77, flags=0)
    feed(book, [t1, f.rec("F", "A", px(1), 2, 5), f.rec("T", "N", px(1), 1, 0)])

    trades = book.take_trades()

    assert trades[0] == BookTrade(
        publisher_id=PUB, instrument_id=INST, ts_event=t1.ts_event, ts_recv=t1.ts_recv, sequence=t1.sequence,
        price=px(1), size=2, side="B", order_id=77,
    )
    assert [t.side for t in trades] == ["B", "N"]
    assert book.take_trades() == []


@pytest.mark.parametrize("action", ["A", "C", "M"])
def test_side_none_with_add_cancel_modify_is_a_bad_record(f: Feed, action: str) -> None:
    book = new_book()
    feed(book, [f.add("A", px(1), 5, 1)])

    feed(book, [f.rec(action, "N", px(1), 5, 1)])

    assert book.order(1) == ("A", px(1), 5)
    assert book.stats.bad_records == 1


def test_add_with_undefined_price_or_zero_size_is_a_bad_record(f: Feed) -> None:
    book = new_book()

    feed(book, [f.add("B", UNDEF_PRICE, 1, 1), f.add("B", px(0), 0, 2)])

    assert book.order_count == 0
    assert book.stats.bad_records == 2


def test_add_of_a_resting_order_id_replaces_it(f: Feed) -> None:
    book = new_book()
    feed(book, [f.add("B", px(0), 1, 1), f.add("B", px(0), 1, 2)])

    feed(book, [f.add("B", px(0), 3, 1)])

    assert book.queue("B", px(0)) == [(2, 1), (1, 3)]
    assert book.stats.duplicate_adds == 1


def test_mbp_flagged_records_are_treated_as_orders(f: Feed) -> None:
    book = new_book()

    feed(book, [f.add("B", px(0), 10, 1, flags=F_LAST | F_MBP), f.add("B", px(0), 4, 2, flags=F_LAST | F_MBP)])

    assert book.bbo()[0] == Level(px(0), 14, 2)


def test_apply_returns_true_only_at_f_last(f: Feed) -> None:
    book = new_book()

    results = feed(book, [f.add("B", px(0), 1, 1, flags=0), f.add("B", px(0), 1, 2, flags=F_LAST)])

    assert results == [False, True]
    assert book.stats.consistency_points == 1


def test_top_of_book_add_replaces_the_whole_side(f: Feed) -> None:
    book = new_book()
    feed(book, [f.add("B", px(0), 1, 1), f.add("B", px(-1), 1, 2), f.add("A", px(2), 3, 3)])

    feed(book, [f.add("B", px(1), 9, 0, flags=F_LAST | F_TOB)])

    assert book.levels("B") == [Level(px(1), 9, 0)]
    assert book.bbo() == (Level(px(1), 9, 0), Level(px(2), 3, 1))
    assert (book.order(1), book.order(2), book.order_count) == (None, None, 1)
    assert book.stats.tob_updates == 1


def test_top_of_book_add_with_undefined_price_empties_the_side(f: Feed) -> None:
    book = new_book()
    feed(book, [f.add("A", px(2), 3, 0, flags=F_LAST | F_TOB)])

    feed(book, [f.add("A", UNDEF_PRICE, 0, 0, flags=F_LAST | F_TOB)])

    assert book.bbo() == (None, None)
    assert book.levels("A") == []


def test_top_of_book_updates_follow_each_other(f: Feed) -> None:
    book = new_book()

    feed(book, [f.add("A", px(2), 3, 0, flags=F_LAST | F_TOB), f.add("A", px(3), 5, 0, flags=F_LAST | F_TOB)])

    assert book.levels("A") == [Level(px(3), 5, 0)]


def test_record_of_another_instrument_is_refused(f: Feed, book_cls: type[Book]) -> None:
    book = book_cls(PUB, INST + 1)

    with pytest.raises(WrongBookError) as err:
        book.apply(f.add("B", px(0), 1, 1))

    assert isinstance(err.value, BookError)


def test_unknown_policy_is_refused(book_cls: type[Book]) -> None:
    with pytest.raises(PolicyError, match="crossed_policy"):
        book_cls(PUB, INST, "ignore")


def test_apply_fields_gives_the_same_book_as_apply(f: Feed) -> None:
    records = [f.add("B", px(0), 5, 1), f.add("A", px(1), 2, 2), f.modify("B", px(0), 3, 1), f.cancel("A", px(1), 2, 2)]
    by_record, by_fields = new_book(), new_book()

    feed(by_record, records)
    for r in records:
        by_fields.apply_fields(
            r.action, r.side, r.price, r.size, r.order_id, r.flags, r.sequence, r.channel_id, r.ts_recv, r.ts_event
        )

    assert by_fields.to_state() == by_record.to_state()


def test_trade_with_an_invalid_side_is_a_bad_record(f: Feed) -> None:
    book = new_book()

    feed(book, [f.rec("T", "X", px(0), 1, 1)])

    assert book.take_trades() == []
    assert book.stats.bad_records == 1


def test_records_flagged_maybe_bad_book_are_counted(f: Feed) -> None:
    book = new_book()

    feed(book, [f.add("B", px(0), 1, 1, flags=F_LAST | F_MAYBE_BAD_BOOK), f.add("B", px(0), 1, 2)])

    assert book.stats.maybe_bad_book == 1
    assert book.order_count == 2


def test_unknown_action_letter_is_a_bad_record() -> None:
    book = new_book()

    book.apply_fields("X", "B", px(0), 1, 1, F_LAST, 5, 0, 10, 9)

    assert book.stats.bad_records == 1


def test_stats_count_records_and_actions(f: Feed) -> None:
    book = new_book()
    records: list[MboRecord] = [f.add("B", px(0), 5, 1), f.add("A", px(1), 2, 2), f.cancel("A", px(1), 2, 2)]

    feed(book, [*records, records[0]])

    assert book.stats.records == 4
    assert book.stats.by_action == {"A": 2, "C": 1}
    assert book.stats.duplicates_skipped == 1


@pytest.mark.parametrize("query", ["levels", "depth_of", "queue"])
def test_queries_refuse_a_side_other_than_bids_or_asks(query: str) -> None:
    book = new_book()

    with pytest.raises(SideError):
        getattr(book, query)("N", *([px(0)] if query != "levels" else []))


def test_restoring_a_state_with_an_order_listed_twice_is_refused(f: Feed, book_cls: type[Book]) -> None:
    book = new_book()
    feed(book, [f.add("B", px(0), 1, 1), f.add("A", px(1), 1, 2)])
    state = book.to_state()
    broken = BookState(**{**{k: getattr(state, k) for k in state.__struct_fields__}, "asks": [
        msgspec.structs.replace(state.asks[0], orders=[state.bids[0].orders[0]])
    ]})

    with pytest.raises(StateError, match="listed twice"):
        book_cls.from_state(broken)


def test_restoring_a_state_of_another_version_is_refused(f: Feed, book_cls: type[Book]) -> None:
    state = msgspec.structs.replace(new_book().to_state(), version=99)

    with pytest.raises(StateError, match="version"):
        book_cls.from_state(state)
