"""MBP-10 conventions checked against Databento's own MBP files in shared/ and on the ARL session."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from processors.book import Book
from producers.mbp10 import Mbp10CsvWriter, Mbp10Row, Mbp10Tracker, format_price, format_ts, header
from producers.readers import open_records
from tests.producers.readers.conftest import ARL_CSV, dbn, decompressed, new_decoder, transcode_csv
from topics.records import F_LAST, UNDEF_PRICE, Level, MboRecord

pytestmark = pytest.mark.unit

PY = "databento/databento-python"
VENDOR_MBP = [
    f"{PY}/{ds}/test_data.{schema}.dbn.zst"
    for ds in ("XNAS.ITCH", "GLBX.MDP3", "IFEU.IMPACT", "NDEX.IMPACT") for schema in ("mbp-10", "mbp-1")
] + ["databento/dbn/test_data.mbp-10.dbn", "databento/dbn/test_data.mbp-10.v3.dbn.zst"]


def vendor(path: Path) -> list[Any]:
    """Databento's MBP records of a file, decoded by databento_dbn."""
    msgs = new_decoder().write_and_decode(decompressed(path))
    return [m for m in msgs if isinstance(m, (dbn.MBP10Msg, dbn.MBP1Msg))]


def vendor_row(msg: Any, symbol: str) -> Mbp10Row:
    """A vendor record as our row type, empty levels dropped (our books list only existing levels)."""
    bids = [Level(lv.bid_px, lv.bid_sz, lv.bid_ct) for lv in msg.levels if lv.bid_px != UNDEF_PRICE]
    asks = [Level(lv.ask_px, lv.ask_sz, lv.ask_ct) for lv in msg.levels if lv.ask_px != UNDEF_PRICE]
    return Mbp10Row(
        ts_recv=msg.ts_recv, ts_event=msg.ts_event, publisher_id=int(msg.publisher_id),
        instrument_id=msg.instrument_id, action=str(msg.action), side=str(msg.side), depth=msg.depth,
        price=msg.price, size=msg.size, flags=int(msg.flags), ts_in_delta=msg.ts_in_delta, sequence=msg.sequence,
        bids=bids, asks=asks, symbol=symbol, rtype=int(getattr(msg.rtype, "value", msg.rtype)),
    )


def replay(records: list[MboRecord], book: Book | None = None, symbol: str = "", **opts: Any) -> list[Mbp10Row]:
    book = book or Book(records[0].publisher_id, records[0].instrument_id)
    tracker = Mbp10Tracker(book, symbol, **opts)
    rows = [row for rec in records for row in tracker.feed(rec)]
    return rows + tracker.flush()


def without_order_id(rows: list[Mbp10Row]) -> list[Mbp10Row]:
    return [Mbp10Row(**{**{f: getattr(r, f) for f in r.__struct_fields__}, "order_id": 0}) for r in rows]


@pytest.mark.parametrize("name", VENDOR_MBP)
def test_csv_encoding_is_databentos_own(shared_data: Path, name: str) -> None:
    """Every vendor MBP record, written by our writer in the dbn layout, gives Databento's CSV byte for byte:
    header, ISO timestamps with 9 digits and Z, 9-decimal prices, empty price / size 0 / count 0 levels."""
    path = shared_data / name
    symbol = next(iter(new_decoder().write_and_decode(decompressed(path))[0].mappings))  # the file's one symbol
    msgs = vendor(path)
    levels = len(msgs[0].levels)
    out = io.StringIO()
    writer = Mbp10CsvWriter(out, "dbn", levels=levels)
    for msg in msgs:
        row = vendor_row(msg, symbol)
        writer.write([row])
    assert out.getvalue() == transcode_csv(decompressed(path))


def test_xnas_adds_from_an_empty_book_give_the_vendor_mbp10(shared_data: Path) -> None:
    reader = open_records(shared_data / PY / "XNAS.ITCH/test_data.mbo.dbn.zst")
    records = list(reader)
    ours = replay(records, symbol="NVDA", update_side="none")
    theirs = [vendor_row(m, "NVDA") for m in vendor(shared_data / PY / "XNAS.ITCH/test_data.mbp-10.dbn.zst")]
    assert without_order_id(ours) == theirs
    assert [r.depth for r in ours] == [0, 0, 0, 1]  # the 510.01 bid goes in behind 512.01
    assert [r.order_id for r in ours] == [r.order_id for r in records]


def test_xnas_mbp1_leaves_out_events_below_the_top(shared_data: Path) -> None:
    """MBP-1 has no record for the add at depth 1 (seq 293260): Databento's MBP schemas only carry events within
    their levels, which is what ``top_only`` does."""
    records = list(open_records(shared_data / PY / "XNAS.ITCH/test_data.mbo.dbn.zst"))
    ours = replay(records, symbol="NVDA", update_side="none", top_only=True, levels=1)
    theirs = [vendor_row(m, "NVDA") for m in vendor(shared_data / PY / "XNAS.ITCH/test_data.mbp-1.dbn.zst")]
    assert [r.sequence for r in theirs] == [289000, 289001, 290662, 296425]  # 296425 is after the MBO file's end
    assert without_order_id(ours) == theirs[:3]


def test_trades_with_side_n_are_rows_with_an_unchanged_book(shared_data: Path) -> None:
    records = list(open_records(shared_data / PY / "IFEU.IMPACT/test_data.mbo.dbn.zst"))
    theirs = [vendor_row(m, "BRN FMJ0024!") for m in vendor(shared_data / PY / "IFEU.IMPACT/test_data.mbp-10.dbn.zst")]
    every = replay(records, symbol="BRN FMJ0024!", every_record=True)
    assert without_order_id(every) == theirs  # every trade is a row: T, side N, depth 0
    points = replay(records, symbol="BRN FMJ0024!")
    assert without_order_id(points) == [r for r in theirs if r.flags & F_LAST]


def _seeded_book(msg: Any, cancel: MboRecord) -> Book:
    """A book holding the vendor's levels as they were before ``cancel`` (the cancelled order put back)."""
    book = Book(cancel.publisher_id, cancel.instrument_id)
    oid = 1
    for lv in msg.levels:
        for side, px, sz, ct in (("B", lv.bid_px, lv.bid_sz, lv.bid_ct), ("A", lv.ask_px, lv.ask_sz, lv.ask_ct)):
            for k in range(ct):
                size = sz - (ct - 1) if k == 0 else 1
                book.apply_fields("A", side, px, size, oid, 0, oid, 1, 0, 0)
                oid += 1
    book.apply_fields("A", cancel.side, cancel.price, cancel.size, cancel.order_id, F_LAST, 0, 1, 0, 0)
    return book


def test_glbx_cancel_at_level_nine(shared_data: Path) -> None:
    """C ask 3722.75 x1 (seq 1170352): depth 9, side A, the book after the cancel (vendor dbn test files)."""
    cancel = next(iter(open_records(shared_data / "databento/dbn/test_data.mbo.dbn")))
    msg = vendor(shared_data / "databento/dbn/test_data.mbp-10.dbn")[0]
    assert msg.sequence == cancel.sequence == 1170352
    (row,) = replay([cancel], _seeded_book(msg, cancel), symbol="ESH1")
    assert without_order_id([row]) == [vendor_row(msg, "ESH1")]
    assert (row.action, row.side, row.depth) == ("C", "A", 9)


@pytest.fixture(scope="module")
def arl(shared_data: Path) -> list[MboRecord]:
    return list(open_records(shared_data / ARL_CSV))


@pytest.fixture(scope="module")
def arl_rows(arl: list[MboRecord]) -> list[Mbp10Row]:
    return replay(arl, symbol="ARL")


def test_arl_all_depths_gives_one_row_per_f_last_sequence(arl: list[MboRecord]) -> None:
    rows = replay(arl, symbol="ARL", top_only=False)
    f_last = [r.sequence for r in arl if r.flags & F_LAST]
    assert [r.sequence for r in rows] == list(dict.fromkeys(f_last))  # one row each, in order
    assert len(rows) == 4_197
    assert not any(r.action in "FR" for r in rows)  # the R (flags 8) and fills give no row


def test_arl_rows_are_the_events_that_change_the_top_ten_levels(
    arl: list[MboRecord], arl_rows: list[Mbp10Row]
) -> None:
    every = replay(arl, symbol="ARL", top_only=False)
    kept = {r.sequence for r in arl_rows}
    dropped = [r for r in every if r.sequence not in kept]
    assert arl_rows == [r for r in every if r.sequence in kept]  # the same rows, only fewer
    assert dropped and all(r.action in "AC" and r.depth >= 10 for r in dropped)  # ARL has no modifies
    assert all(r.depth < 10 for r in arl_rows if r.action in "AC")


def test_arl_execution_is_one_trade_row_on_the_resting_side(arl: list[MboRecord], arl_rows: list[Mbp10Row]) -> None:
    by_seq: dict[int, list[MboRecord]] = defaultdict(list)
    for rec in arl:
        by_seq[rec.sequence].append(rec)
    rows = {r.sequence: r for r in arl_rows}
    executions = [seq for seq, recs in by_seq.items() if [r.action for r in recs] == ["T", "F", "C"]]
    assert len(executions) == 11
    for seq in executions:
        trade, fill, cancel = by_seq[seq]
        if not any(r.flags & F_LAST for r in by_seq[seq]):
            assert seq not in rows
            continue
        row = rows[seq]
        assert (row.action, row.side, row.price, row.size) == ("T", fill.side, trade.price, trade.size)
        assert row.side != trade.side and row.order_id == trade.order_id == 0
        book = Book(2, 1108)  # an independent replay up to the group's last record
        for rec in arl[: arl.index(cancel) + 1]:
            book.apply(rec)
        assert (row.bids, row.asks) == (book.levels("B"), book.levels("A"))


def test_arl_hidden_trades_are_rows_at_depth_zero(arl: list[MboRecord], arl_rows: list[Mbp10Row]) -> None:
    every = replay(arl, symbol="ARL", top_only=False)  # a row at every point: the previous one is the book before
    hidden = [(i, r) for i, r in enumerate(every) if r.side == "N"]
    assert len(hidden) == 31 and all(r.action == "T" and r.depth == 0 for _, r in hidden)
    for i, row in hidden:
        assert (row.bids, row.asks) == (every[i - 1].bids, every[i - 1].asks)
    assert {r.sequence for _, r in hidden} <= {r.sequence for r in arl_rows}  # trades always make a row


def test_arl_every_record_mode(arl: list[MboRecord]) -> None:
    rows = replay(arl, symbol="ARL", every_record=True)
    assert len(rows) == len(arl)
    assert [(r.action, r.side, r.sequence) for r in rows] == [(r.action, r.side, r.sequence) for r in arl]


def _rec(action: str, side: str, price: int, size: int, oid: int, seq: int, flags: int = F_LAST) -> MboRecord:
    return MboRecord(ts_recv=seq, ts_event=seq, publisher_id=1, instrument_id=1, action=action, side=side,  # type: ignore[arg-type]
                     price=price, size=size, order_id=oid, flags=flags, sequence=seq)


def test_depth_of_adds_cancels_and_modifies() -> None:
    recs = [_rec("A", "B", 100 - k, 1, k + 1, k + 1) for k in range(12)]  # bids 100 .. 89
    recs += [
        _rec("C", "B", 98, 1, 3, 20),  # removes level 2: depth 2, the index it had
        _rec("M", "B", 101, 1, 12, 21),  # order 12 moves to a new best: depth 0
        _rec("A", "B", 50, 1, 99, 22),  # far below: depth 11
    ]
    rows = replay(recs, top_only=False)
    assert [r.depth for r in rows[:12]] == list(range(12))
    assert [(r.action, r.depth, len(r.bids)) for r in rows[12:]] == [("C", 2, 10), ("M", 0, 10), ("A", 11, 10)]
    top = replay(recs)
    assert [r.sequence for r in top] == [*range(1, 11), 20, 21]


def test_modify_across_the_tenth_level_makes_a_row() -> None:
    recs = [_rec("A", "B", 100 - k, 1, k + 1, k + 1) for k in range(12)]  # bids 100 .. 89
    recs += [
        _rec("M", "B", 80, 1, 2, 20),  # order 2 leaves level 1 for depth 11: the ten levels change
        _rec("M", "B", 79, 1, 2, 21),  # from depth 11 to depth 12: nothing visible changes
        _rec("M", "B", 99, 1, 2, 22),  # back into the ten levels
    ]
    rows = replay(recs)
    assert [(r.sequence, r.action) for r in rows[10:]] == [(20, "M"), (22, "M")]


def test_update_side_none_only_touches_book_updates() -> None:
    recs = [_rec("A", "A", 100, 5, 1, 1), _rec("T", "B", 100, 2, 0, 2, F_LAST), _rec("F", "A", 100, 2, 1, 2),
            _rec("C", "A", 100, 2, 1, 2)]
    rows = replay(recs, update_side="none")
    assert [(r.action, r.side, r.depth, r.size) for r in rows] == [("A", "N", 0, 5), ("T", "A", 0, 2)]
    assert rows[1].asks == [Level(100, 3, 1)]


def test_by_side_header_and_formats() -> None:
    cols = header()
    assert cols[:19] == [
        "ts_recv", "ts_event", "rtype", "publisher_id", "instrument_id", "action", "side", "depth", "price", "size",
        "flags", "ts_in_delta", "sequence", "bid_px_00", "bid_sz_00", "bid_ct_00", "ask_px_00", "ask_sz_00",
        "ask_ct_00",
    ]
    assert cols[-8:] == ["bid_px_09", "bid_sz_09", "bid_ct_09", "ask_px_09", "ask_sz_09", "ask_ct_09", "symbol",
                         "order_id"]
    assert len(cols) == 13 + 60 + 2
    assert format_price(5_510_000_000) == "5.510000000" and format_price(-1) == "-0.000000001"
    assert format_price(UNDEF_PRICE) == ""
    assert format_ts(1_752_739_503_360_842_448) == "2025-07-17T08:05:03.360842448Z"
