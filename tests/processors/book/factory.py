"""Hand-made MBO records for rule tests: one call per record, sensible defaults, increasing sequence and time."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from processors.book import Book
from topics.records import F_LAST, MboRecord

PUB, INST = 1, 42
TICK = 250_000_000  # 0.25 in 1e-9 fixed point
ENGINE: Any = Book  # the engine new_book() builds; the book_cls fixture (conftest.py) sets it


def px(ticks: int) -> int:
    """A price ``ticks`` quarter points above 4800."""
    return 4800 * 1_000_000_000 + ticks * TICK


class Feed:
    """Builds records with a running sequence and clock, so tests only state what matters."""

    def __init__(self, start_seq: int = 100, start_ts: int = 1_700_000_000_000_000_000) -> None:
        self._seq = itertools.count(start_seq)
        self._ts = itertools.count(start_ts, 1_000)

    def rec(
        self, action: str, side: str = "N", price: int = 0, size: int = 0, order_id: int = 0, *,
        flags: int = F_LAST, sequence: int | None = None, ts: int | None = None, channel_id: int = 0,
    ) -> MboRecord:
        ts_recv = next(self._ts) if ts is None else ts
        return MboRecord(
            ts_recv=ts_recv, ts_event=ts_recv - 500, publisher_id=PUB, instrument_id=INST,
            action=action, side=side, price=price, size=size,  # type: ignore[arg-type]
            order_id=order_id, flags=flags, sequence=next(self._seq) if sequence is None else sequence,
            channel_id=channel_id,
        )

    def add(self, side: str, price: int, size: int, order_id: int, **kw: object) -> MboRecord:
        return self.rec("A", side, price, size, order_id, **kw)  # type: ignore[arg-type]

    def cancel(self, side: str, price: int, size: int, order_id: int, **kw: object) -> MboRecord:
        return self.rec("C", side, price, size, order_id, **kw)  # type: ignore[arg-type]

    def modify(self, side: str, price: int, size: int, order_id: int, **kw: object) -> MboRecord:
        return self.rec("M", side, price, size, order_id, **kw)  # type: ignore[arg-type]


def feed(book: Book, records: Iterable[MboRecord]) -> list[bool]:
    """Apply records in order; the list of apply() results."""
    return [book.apply(r) for r in records]


def new_book(policy: str = "keep") -> Book:
    book: Book = ENGINE(PUB, INST, policy)
    return book
