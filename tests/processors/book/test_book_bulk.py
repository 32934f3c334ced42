"""Bulk feeding (frames, columns, raw DBN) gives what feeding the same records one by one gives, in both engines."""

from __future__ import annotations

import logging
import os
import struct
from typing import Any

import pytest

from processors.book import COMPILED, Book, FastBook, WrongBookError
from processors.book.dbn import MBO, dbn_body
from tests.processors.book import bookdata as bd
from topics.records import F_LAST, Level, MboFrame, MboRecord

pytestmark = pytest.mark.unit

BboChange = tuple[int, Level | None, Level | None]


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="processors.book")


def test_compiled_engine_is_built() -> None:
    """``pip install -e .`` builds the extension; without it every compiled-engine test is skipped, so say so.

    ``ORDERFLOW_ALLOW_PURE_BOOK=1`` accepts a machine that cannot build it (the pure engine works, slower)."""
    if os.environ.get("ORDERFLOW_ALLOW_PURE_BOOK") == "1":
        pytest.skip("ORDERFLOW_ALLOW_PURE_BOOK=1")
    assert FastBook is not None, "the compiled book engine is not built: see the pip install output"
    assert COMPILED or os.environ.get("ORDERFLOW_PURE_BOOK") == "1"


def one_by_one(book: Any, records: tuple[MboRecord, ...]) -> tuple[list[int], list[BboChange]]:
    """Consistency point indices and BBO changes, record by record."""
    points: list[int] = []
    changes: list[BboChange] = []
    for i, r in enumerate(records):
        if book.apply(r):
            points.append(i)
            bbo = book.bbo()
            if not changes or changes[-1][1:] != bbo:
                changes.append((i, *bbo))
    return points, changes


def frames(records: tuple[MboRecord, ...], size: int = 250) -> list[MboFrame]:
    out, start = [], 0
    for i, r in enumerate(records):
        if r.flags & F_LAST or i - start >= size - 1 or i == len(records) - 1:
            out.append(MboFrame.from_records(records[start:i + 1]))
            start = i + 1
    return out


def esh4_body() -> bytes:
    return bytes(dbn_body(bd._raw_bytes(bd.DATA / bd.ESH4_1225)))


def test_frames_give_the_points_bbo_changes_and_state_of_one_by_one(shared_data: object,
                                                                    book_cls: type[Book]) -> None:
    records = bd.mbo_records(bd.ESH4_1225)
    reference = book_cls(1, 17077)
    want_points, want_changes = one_by_one(reference, records)
    book = book_cls(1, 17077)
    points: list[int] = []
    changes: list[BboChange] = []
    seen: list[tuple[int, object]] = []
    offset = 0

    for frame in frames(records):
        frame_changes: list[BboChange] = []
        base = offset

        def on_point(i: int, base: int = base) -> None:
            seen.append((base + i, book.bbo()))

        points += [base + i for i in book.apply_frame(frame, on_point, frame_changes)]
        for i, bid, ask in frame_changes:
            if not changes or changes[-1][1:] != (bid, ask):
                changes.append((base + i, bid, ask))
        offset += len(frame)

    assert points == want_points
    assert changes == want_changes
    assert [i for i, _ in seen] == want_points
    assert book.to_state() == reference.to_state()


def test_raw_dbn_gives_the_points_bbo_changes_and_state_of_one_by_one(shared_data: object,
                                                                      book_cls: type[Book]) -> None:
    records = bd.mbo_records(bd.ESH4_1225)
    reference = book_cls(1, 17077)
    want_points, want_changes = one_by_one(reference, records)
    book = book_cls(1, 17077)
    changes: list[BboChange] = []
    called: list[int] = []

    points = book.apply_dbn(esh4_body(), called.append, changes)

    assert points == called == want_points
    assert changes == want_changes
    assert book.to_state() == reference.to_state()


def other_instrument(raw: bytes, instrument_id: int) -> bytes:
    return raw[:4] + struct.pack("<I", instrument_id) + raw[8:]


def test_raw_dbn_skips_other_instruments_and_record_types(shared_data: object, book_cls: type[Book]) -> None:
    body = esh4_body()[:56 * 2_000]
    mixed = bytearray()
    for pos in range(0, len(body), 56):
        raw = body[pos:pos + 56]
        mixed += raw + other_instrument(raw, 99) + bytes([4, 0x01]) + bytes(14)  # + a 16-byte non-MBO record
    alone, together = book_cls(1, 17077), book_cls(1, 17077)

    points = together.apply_dbn(mixed)

    assert [p // 3 for p in points] == alone.apply_dbn(body)
    assert all(p % 3 == 0 for p in points)
    assert together.to_state() == alone.to_state()


def test_raw_dbn_fields_decode_like_databento_dbn(shared_data: object) -> None:
    body, records = esh4_body(), bd.mbo_records(bd.ESH4_1225)

    fields = [MBO.unpack_from(body, pos) for pos in range(0, 56 * 500, 56)]

    assert [(f[4], f[5], f[6], f[7], f[8], f[9], f[10].decode(), f[11].decode(), f[12], f[14]) for f in fields] == [
        (r.ts_event, r.order_id, r.price, r.size, r.flags, r.channel_id, r.action, r.side, r.ts_recv, r.sequence)
        for r in records[:500]
    ]


def test_truncated_raw_dbn_is_refused_before_anything_applies(shared_data: object, book_cls: type[Book]) -> None:
    book = book_cls(1, 17077)

    with pytest.raises(ValueError, match="truncated"):
        book.apply_dbn(esh4_body()[:56 * 10 + 20])

    assert book.stats.records == 0


def test_columns_of_unequal_length_are_refused_before_anything_applies(book_cls: type[Book]) -> None:
    book = book_cls(1, 42)

    with pytest.raises(ValueError, match="length"):
        book.apply_frame_columns("AA", "BB", [1, 2], [1, 1], [1, 2], [F_LAST] * 2, [1, 2], [0, 0], [1, 2], [1])

    assert book.stats.records == 0


def test_frame_of_another_instrument_is_refused(book_cls: type[Book]) -> None:
    rec = MboRecord(ts_recv=1, ts_event=1, publisher_id=1, instrument_id=7, action="A", side="B", price=1, size=1,
                    order_id=1, flags=F_LAST)

    with pytest.raises(WrongBookError):
        book_cls(1, 8).apply_frame(MboFrame.from_records([rec]))


def test_dbn_body_refuses_what_is_not_dbn() -> None:
    with pytest.raises(ValueError, match="DBN"):
        dbn_body(b"not dbn at all")
