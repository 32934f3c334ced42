"""The LOBSTER reader: the documented mapping to MBO, checked against LOBSTER's own order book file."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from producers.readers import LobsterReader, MalformedRecordError, UnsupportedFileError, open_records
from tests.producers.readers.conftest import AAPL_BOOK, AAPL_MESSAGES
from topics.records import F_LAST, MboRecord

pytestmark = pytest.mark.unit

NAME = "XYZ_2012-06-21_34200000_57600000_message_10.csv"
NINE_THIRTY_NEW_YORK = 1_340_285_400_000_000_000  # 2012-06-21T13:30:00Z = 09:30 in New York (EDT)


def _lobster(tmp_path: Path, *rows: str, name: str = NAME) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(rows))
    return path


def test_aapl_sample_counts(shared_data: Path) -> None:
    reader = open_records(shared_data / AAPL_MESSAGES, instrument_id=7, publisher_id=2)
    assert isinstance(reader, LobsterReader)
    records = list(reader)
    # 471 submissions, 369 deletions, 98 visible executions (T+F+C each), 61 hidden executions
    assert Counter(r.action for r in records) == {"A": 471, "C": 369 + 98, "T": 98 + 61, "F": 98}
    assert len({r.sequence for r in records}) == 999
    assert all(r.instrument_id == 7 and r.publisher_id == 2 for r in records)
    assert reader.symbols == {7: "AAPL"}
    first = records[0]
    assert (first.action, first.side, first.price, first.size, first.order_id) == ("A", "B", 585_330_000_000, 18,
                                                                                  16_113_575)
    assert first.ts_event == first.ts_recv == NINE_THIRTY_NEW_YORK + 4_241_176 and first.sequence == 1


def test_mapping_of_each_event_type(tmp_path: Path) -> None:
    path = _lobster(
        tmp_path,
        "34200.1,1,11,100,1000000,1",  # submit buy 100 @ 100.00
        "34200.2,2,11,30,1000000,1",  # partial cancel of 30
        "34200.3,4,11,20,1000000,1",  # visible execution of 20 against the resting buy
        "34200.4,5,0,7,1000100,-1",  # hidden execution
        "34200.5,3,11,50,1000000,1",  # delete the remaining 50
        "34200.6,6,0,500,1000200,-1",  # cross trade
        "34200.7,7,0,0,-1,-1",  # halt
    )
    reader = LobsterReader(path)
    rows = [(r.action, r.side, r.price, r.size, r.order_id, r.sequence, r.flags) for r in reader]
    px, hidden, cross = 100_000_000_000, 100_010_000_000, 100_020_000_000
    assert rows == [
        ("A", "B", px, 100, 11, 1, F_LAST),
        ("C", "B", px, 30, 11, 2, F_LAST),
        ("T", "A", px, 20, 0, 3, 0), ("F", "B", px, 20, 11, 3, 0), ("C", "B", px, 20, 11, 3, F_LAST),
        ("T", "N", hidden, 7, 0, 4, F_LAST),
        ("C", "B", px, 50, 11, 5, F_LAST),
        ("T", "N", cross, 500, 0, 6, F_LAST),
    ]
    assert reader.stats.ignored == {"halt": 1} and reader.stats.records == 8


def test_same_timestamp_rows_are_one_event(tmp_path: Path) -> None:
    path = _lobster(
        tmp_path,
        "34200.5,4,11,20,1000000,1",
        "34200.5,4,12,20,999900,1",
        "34200.6,1,13,5,1000000,-1",
    )
    flags = [(r.action, r.sequence, bool(r.flags & F_LAST)) for r in LobsterReader(path)]
    assert flags == [
        ("T", 1, False), ("F", 1, False), ("C", 1, False),
        ("T", 2, False), ("F", 2, False), ("C", 2, True),
        ("A", 3, True),
    ]


def test_date_and_zone(tmp_path: Path) -> None:
    path = _lobster(tmp_path, "34200.000000001,1,1,1,1,1", name="msgs.csv")
    with pytest.raises(UnsupportedFileError, match="date"):
        LobsterReader(path)
    (rec,) = LobsterReader(path, date="2012-06-21", symbol="XYZ")
    assert rec.ts_event == NINE_THIRTY_NEW_YORK + 1
    (rec,) = LobsterReader(path, date="2012-01-03", tz="UTC")
    assert rec.ts_event == 1_325_548_800_000_000_000 + 34_200_000_000_001  # 2012-01-03T09:30:00.000000001Z


@pytest.mark.parametrize(
    ("row", "category", "reason"),
    [
        ("34200.1,9,11,100,1000000,1", "bad type", "type: 9 is outside [1, 7]"),
        ("34200.1,1,11,100,1000000,0", "bad direction", "direction: 0 is not 1 (buy) or -1 (sell)"),
        ("34200.1,1,11,100,1000000", "column count", "expected 6 columns, got 5"),
        ("9:30,1,11,100,1000000,1", "bad time", "time: '9:30' is not seconds after midnight"),
        ("34200.1,1,11,abc,1000000,1", "bad size", "size: 'abc' is not an integer"),
    ],
)
def test_malformed_rows(tmp_path: Path, row: str, category: str, reason: str) -> None:
    path = _lobster(tmp_path, "34200.0,1,10,1,1000000,1", row, "34200.2,1,12,1,1000000,1")
    with pytest.raises(MalformedRecordError) as err:
        list(LobsterReader(path))
    assert err.value.location == "row 2" and reason in err.value.reason and err.value.path == str(path)
    skipping = LobsterReader(path, on_error="skip")
    assert [r.sequence for r in skipping] == [1, 3]
    assert skipping.stats.by_reason == {category: 1}


def _book_rows(path: Path) -> list[dict[str, list[tuple[int, int]]]]:
    """LOBSTER order book rows as {"A": [(price, size)...], "B": [...]}, prices in 1e-9."""
    out = []
    with path.open() as f:
        for row in csv.reader(f):
            values = [int(v) for v in row]
            levels = [values[i:i + 4] for i in range(0, len(values), 4)]
            out.append({
                "A": [(ap * 100_000, asz) for ap, asz, _, _ in levels if asz],
                "B": [(bp * 100_000, bsz) for _, _, bp, bsz in levels if bsz],
            })
    return out


def _apply(book: dict[str, list[tuple[int, int]]], records: list[MboRecord]) -> dict[str, list[tuple[int, int]]]:
    """Price-level deltas of one message's records on a visible book: A adds, C removes, T and F change nothing."""
    sizes: dict[str, dict[int, int]] = {s: dict(levels) for s, levels in book.items()}
    for r in records:
        if r.action in "AC":
            side = sizes[r.side]
            side[r.price] = side.get(r.price, 0) + (r.size if r.action == "A" else -r.size)
            if side[r.price] == 0:
                del side[r.price]
    return {
        "A": sorted(sizes["A"].items()),
        "B": sorted(sizes["B"].items(), reverse=True),
    }


def test_records_rebuild_lobster_order_book(shared_data: Path) -> None:
    """Each message's records, applied to the book before it, give LOBSTER's book after it (top 10 levels; when a
    level empties, the level coming into the window from beyond is unknown and not compared)."""
    books = _book_rows(shared_data / AAPL_BOOK)
    by_row: dict[int, list[MboRecord]] = defaultdict(list)
    for rec in LobsterReader(shared_data / AAPL_MESSAGES):
        by_row[rec.sequence].append(rec)
    checked = 0
    for i in range(1, len(books)):
        got = _apply(books[i - 1], by_row[i + 1])
        for side in "AB":
            want = books[i][side]
            mine = got[side][:10]
            emptied = len(got[side]) < len(books[i - 1][side])
            n = min(len(want), 9) if emptied else 10
            assert mine[:n] == want[:n], f"message row {i + 1}, side {side}"
        checked += 1
    assert checked == 998
