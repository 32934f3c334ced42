"""Market: books per (publisher_id, instrument_id), frames, consistency-point callbacks, state."""

from __future__ import annotations

import logging

import msgspec
import pytest

from processors.book import Book, Market, MarketState, PolicyError
from tests.processors.book import bookdata as bd
from tests.processors.book.factory import PUB, Feed, px
from topics.records import F_LAST, Level, MboFrame, MboRecord

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("book_cls")]


def other_instrument(rec: MboRecord, instrument_id: int) -> MboRecord:
    return msgspec.structs.replace(rec, instrument_id=instrument_id)


def test_records_go_to_the_book_of_their_instrument(book_cls: type[Book]) -> None:
    f = Feed()
    market = Market(book_cls=book_cls)

    market.apply(f.add("B", px(0), 1, 1))
    market.apply(other_instrument(f.add("A", px(3), 2, 2), 77))

    assert len(market) == 2
    book77 = market.book(PUB, 77)
    assert book77 is not None and book77.bbo() == (None, Level(px(3), 2, 1))
    assert market.book(PUB, 999) is None


def test_apply_frame_reports_consistency_points_while_the_book_is_in_that_state(book_cls: type[Book]) -> None:
    f = Feed()
    records = [f.add("B", px(0), 1, 1, flags=0), f.add("B", px(1), 1, 2), f.cancel("B", px(1), 1, 2)]
    frame = MboFrame.from_records(records)
    market = Market(book_cls=book_cls)
    seen: list[tuple[int, Level | None]] = []

    points = market.apply_frame(frame, on_point=lambda book, i: seen.append((i, book.bbo()[0])))

    book = market.book(frame.publisher_id, frame.instrument_id)
    assert [(b is book, i) for b, i in points] == [(True, 1), (True, 2)]
    assert seen == [(1, Level(px(1), 1, 1)), (2, Level(px(0), 1, 1))]


def test_apply_frame_equals_record_by_record_on_a_real_day(caplog: pytest.LogCaptureFixture,
                                                            shared_data: object, book_cls: type[Book]) -> None:
    caplog.set_level(logging.ERROR, logger="processors.book")
    records = bd.mbo_records(bd.ESH4_1225)
    by_record, by_frame = Market(book_cls=book_cls), Market(book_cls=book_cls)
    for r in records:
        by_record.apply(r)

    points = 0
    start = 0
    for i, r in enumerate(records):
        if r.flags & F_LAST or i - start >= 249 or i == len(records) - 1:
            points += len(by_frame.apply_frame(MboFrame.from_records(records[start:i + 1])))
            start = i + 1

    assert [b.to_state() for b in by_frame] == [b.to_state() for b in by_record]
    assert points == next(iter(by_record)).stats.consistency_points


def test_market_state_round_trip(book_cls: type[Book]) -> None:
    f = Feed()
    market = Market("match", book_cls=book_cls)
    market.apply(f.add("B", px(0), 1, 1))
    market.apply(other_instrument(f.add("A", px(3), 2, 2), 77))

    restored = Market.from_state(msgspec.json.decode(msgspec.json.encode(market.to_state()), type=MarketState),
                                 book_cls=book_cls)

    assert restored.to_state() == market.to_state()
    assert all(isinstance(b, book_cls) and b.crossed_policy == "match" for b in restored)


def test_market_refuses_an_unknown_policy() -> None:
    with pytest.raises(PolicyError):
        Market("cross")
