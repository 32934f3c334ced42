"""The book on recorded Databento data, checked against facts established outside this code (SOURCES.md, MBP-10)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import databento_dbn
import msgspec
import pytest

from processors.book import Book, BookState, Market
from tests.processors.book import bookdata as bd
from topics.records import F_SNAPSHOT, UNDEF_PRICE, Level, MboRecord

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _need_data_and_quiet_logs(shared_data: object, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="processors.book")


def ns(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()) * 1_000_000_000


def replay(book_cls: type[Book], records: tuple[MboRecord, ...],
           policy: str = "keep") -> tuple[Book, list[tuple[int, bool, bool]]]:
    """Feed one instrument's records; per consistency point (ts_recv, crossed as received, crossed after policy)."""
    first = records[0]
    book = book_cls(first.publisher_id, first.instrument_id, policy)
    points = [(r.ts_recv, book.stats.crossed_now, book.is_crossed()) for r in records if book.apply(r)]
    return book, points


def px(text: str) -> int:
    return bd.parse_price(text)


# ---------------------------------------------------------------- GLBX.MDP3 ESH4, 2023-12-25 (SOURCES.md facts)

def test_esh4_day_ends_with_the_published_book(book_cls: type[Book]) -> None:
    book, _ = replay(book_cls, bd.mbo_records(bd.ESH4_1225))

    bid, ask = book.bbo()
    assert (bid and bid.price, ask and ask.price) == (px("4810.00"), px("4810.25"))
    assert book.order_count == 11_217


def test_esh4_day_has_no_unknown_orders_duplicates_or_bad_records(book_cls: type[Book]) -> None:
    book, _ = replay(book_cls, bd.mbo_records(bd.ESH4_1225))

    s = book.stats
    assert (s.unknown_cancels, s.unknown_modifies, s.over_cancels, s.duplicate_adds) == (0, 0, 0, 0)
    assert (s.duplicates_skipped, s.bad_records) == (0, 0)
    assert s.by_action == {"A": 29_216, "C": 17_999, "M": 12_233, "T": 2_973, "F": 6_371}
    assert s.snapshots == 1


def test_esh4_is_crossed_only_in_the_pre_open_auction_under_keep(book_cls: type[Book]) -> None:
    _, points = replay(book_cls, bd.mbo_records(bd.ESH4_1225), "keep")

    crossed = [ts for ts, was_crossed, _ in points if was_crossed]
    assert len(crossed) == 891  # SOURCES.md: crossed or locked at 891 F_LAST points
    assert ns("2023-12-25T22:39:55") <= crossed[0] and crossed[-1] < ns("2023-12-25T23:00:01")
    assert not any(was_crossed for ts, was_crossed, _ in points if ts >= ns("2023-12-25T23:00:01"))


def test_esh4_crossed_points_are_all_strictly_crossed_none_locked(book_cls: type[Book]) -> None:
    book, _ = replay(book_cls, bd.mbo_records(bd.ESH4_1225), "keep")

    assert (book.stats.crossings, book.stats.locked) == (891, 0)
    assert not book.is_crossed()


@pytest.mark.parametrize("policy", ["match", "drop-stale"])
def test_esh4_is_never_left_crossed_by_the_uncrossing_policies(policy: str, book_cls: type[Book]) -> None:
    book, points = replay(book_cls, bd.mbo_records(bd.ESH4_1225), policy)

    assert not any(crossed_after for _, _, crossed_after in points)
    assert book.stats.crossings > 0


def test_esh4_state_round_trip_mid_day_continues_identically(book_cls: type[Book]) -> None:
    records = bd.mbo_records(bd.ESH4_1225)
    half = len(records) // 2
    original, _ = replay(book_cls, records[:half])

    restored = book_cls.from_state(msgspec.json.decode(msgspec.json.encode(original.to_state()), type=BookState))
    for r in records[half:]:
        assert restored.apply(r) == original.apply(r)

    assert restored.to_state() == original.to_state()


# ---------------------------------------------------------------- GLBX.MDP3 ESM4: R, snapshot, live

def test_esm4_clear_and_snapshot_give_the_13600_order_book(book_cls: type[Book]) -> None:
    records = bd.mbo_records(bd.ESM4)
    book = book_cls(records[0].publisher_id, records[0].instrument_id)

    first_point = next(i for i, r in enumerate(records) if book.apply(r))

    assert records[first_point].flags & F_SNAPSHOT
    assert book.order_count == 13_600
    assert (book.stats.clears, book.stats.snapshots) == (1, 1)


def test_esm4_live_part_applies_without_unknown_orders(book_cls: type[Book]) -> None:
    book, _ = replay(book_cls, bd.mbo_records(bd.ESM4))

    s = book.stats
    assert (s.unknown_cancels, s.unknown_modifies, s.over_cancels, s.duplicates_skipped) == (0, 0, 0, 0)
    assert s.by_action == {"R": 1, "A": 13_678, "C": 80, "M": 27, "T": 5, "F": 5}


# ---------------------------------------------------------------- every MBO file: idempotency on real sequences

def feed_market(market: Market, records: tuple[MboRecord, ...]) -> None:
    for r in records:
        market.apply(r)


def books_only(market: Market) -> list[tuple[object, ...]]:
    states = [b.to_state() for b in market]
    return [(s.publisher_id, s.instrument_id, s.bids, s.asks, s.dedup, s.arrival) for s in states]


@pytest.mark.parametrize("name", bd.ALL_MBO_FILES)
def test_real_file_has_no_duplicates(name: str, book_cls: type[Book]) -> None:
    market = Market(book_cls=book_cls)

    feed_market(market, bd.mbo_records(name))

    assert [b.stats.duplicates_skipped for b in market] == [0] * len(market)


@pytest.mark.parametrize("name", bd.ALL_MBO_FILES)
def test_real_file_fed_twice_skips_the_whole_second_pass(name: str, book_cls: type[Book]) -> None:
    records = bd.mbo_records(name)
    market = Market(book_cls=book_cls)
    feed_market(market, records)
    first_pass = books_only(market)

    feed_market(market, records)

    assert books_only(market) == first_pass
    assert sum(b.stats.duplicates_skipped for b in market) == len(records)


# ---------------------------------------------------------------- XNAS.ITCH ARL session (CSV)

def test_arl_session_replays_without_unknown_orders_and_ends_with_six_orders(book_cls: type[Book]) -> None:
    book, _ = replay(book_cls, bd.mbo_records(bd.ARL_CSV))

    s = book.stats
    assert (s.unknown_cancels, s.unknown_modifies, s.over_cancels) == (0, 0, 0)
    assert book.order_count == 6
    assert (s.clears, s.records, s.bad_records) == (1, 5_886, 0)


def test_arl_csv_parses_prices_and_times_exactly() -> None:
    records = bd.mbo_records(bd.ARL_CSV)

    assert records[0].action == "R" and records[0].price == UNDEF_PRICE
    assert records[1].price == 5_510_000_000 and records[1].order_id == 817_593
    assert records[1].ts_recv == ns("2025-07-17T08:05:03") + 360_842_448


# ---------------------------------------------------------------- MBO against the venue's MBP-10

def mbp10(name: str) -> list[databento_dbn.MBP10Msg]:
    return [r for r in bd.dbn_records(name) if isinstance(r, databento_dbn.MBP10Msg)]


def mbp_side(msg: databento_dbn.MBP10Msg, side: str) -> list[Level]:
    out = []
    for lv in msg.levels:
        price, size, count = (lv.bid_px, lv.bid_sz, lv.bid_ct) if side == "B" else (lv.ask_px, lv.ask_sz, lv.ask_ct)
        if price != UNDEF_PRICE:
            out.append(Level(price, size, count))
    return out


def test_xnas_mbo_adds_rebuild_each_mbp10_record(book_cls: type[Book]) -> None:
    mbo = bd.mbo_records("databento-python/XNAS.ITCH/test_data.mbo.dbn.zst")
    snapshots = mbp10("databento-python/XNAS.ITCH/test_data.mbp-10.dbn.zst")
    book = book_cls(mbo[0].publisher_id, mbo[0].instrument_id)

    for rec, expected in zip(mbo, snapshots, strict=True):
        assert book.apply(rec)
        assert rec.sequence == expected.sequence
        assert book.levels("B") == mbp_side(expected, "B")
        assert book.levels("A") == mbp_side(expected, "A")


def test_glbx_mbo_cancel_matches_its_mbp10_event_and_counts_as_unknown(book_cls: type[Book]) -> None:
    mbo = bd.mbo_records("dbn/test_data.mbo.dbn")
    event = mbp10("dbn/test_data.mbp-10.dbn")[0]
    book = book_cls(mbo[0].publisher_id, mbo[0].instrument_id)

    book.apply(mbo[0])

    rec = mbo[0]
    assert (rec.action, rec.side) == (bd.char(event.action), bd.char(event.side))
    assert (rec.price, rec.size) == (event.price, event.size)
    assert (rec.sequence, rec.ts_event, rec.ts_recv, rec.flags) == (
        event.sequence, event.ts_event, event.ts_recv, int(event.flags)
    )
    assert event.depth == 9
    assert book.stats.unknown_cancels == 1 and book.order_count == 0


@pytest.mark.parametrize("name", [n for n in bd.DBN_MBO_FILES if n.startswith("dbn/")])
def test_dbn_versions_decode_to_the_same_records(name: str) -> None:
    assert bd.mbo_records(name) == bd.mbo_records("dbn/test_data.mbo.v3.dbn")


def test_ifeu_trades_without_side_are_reported_and_change_nothing(book_cls: type[Book]) -> None:
    book, _ = replay(book_cls, bd.mbo_records("databento-python/IFEU.IMPACT/test_data.mbo.dbn.zst"))

    trades = book.take_trades()
    assert [(t.side, t.size) for t in trades] == [("N", 1), ("N", 2), ("N", 4), ("N", 3)]
    assert (book.order_count, book.stats.bad_records) == (0, 0)


def test_ndex_adds_give_the_book(book_cls: type[Book]) -> None:
    book, _ = replay(book_cls, bd.mbo_records("databento-python/NDEX.IMPACT/test_data.mbo.dbn.zst"))

    assert [lv.price for lv in book.levels("B")] == [px("27.055"), px("24.55"), px("18.47")]
    assert book.levels("A") == [Level(px("29.695"), 10, 1)]
