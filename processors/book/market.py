"""Books of many instruments, keyed by (publisher_id, instrument_id), and the frame fast path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from processors.book.book import POLICIES
from processors.book.engine import Book
from processors.book.errors import PolicyError
from processors.book.state import BookState
from topics.records import MboFrame, MboRecord

BookKey = tuple[int, int]  # (publisher_id, instrument_id)
OnPoint = Callable[[Book, int], None]


class MarketState(msgspec.Struct, kw_only=True):
    """Every book of a :class:`Market`."""

    crossed_policy: str
    books: list[BookState]


class Market:
    """Creates a :class:`Book` for each (publisher_id, instrument_id) on its first record.

    ``book_cls`` is the engine (``processors.book.Book``, the compiled one when built, by default).
    """

    def __init__(self, crossed_policy: str = "keep", *, max_pending_trades: int = 100_000,
                 book_cls: Any = None) -> None:
        if crossed_policy not in POLICIES:
            raise PolicyError(f"crossed_policy {crossed_policy!r} is not one of {', '.join(POLICIES)}")
        self.crossed_policy = crossed_policy
        self._max_pending_trades = max_pending_trades
        self._book_cls = Book if book_cls is None else book_cls
        self._books: dict[BookKey, Book] = {}

    def book(self, publisher_id: int, instrument_id: int) -> Book | None:
        """The book of that instrument, or None when no record of it was seen."""
        return self._books.get((publisher_id, instrument_id))

    def book_for(self, publisher_id: int, instrument_id: int) -> Book:
        """The book of that instrument, created empty when absent."""
        key = (publisher_id, instrument_id)
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = self._book_cls(
                publisher_id, instrument_id, self.crossed_policy, max_pending_trades=self._max_pending_trades
            )
        return book

    def __iter__(self) -> Iterator[Book]:
        return iter(self._books.values())

    def __len__(self) -> int:
        return len(self._books)

    def apply(self, rec: MboRecord) -> bool:
        """Apply a record to its book; True at a consistency point (see :meth:`Book.apply`)."""
        return self.book_for(rec.publisher_id, rec.instrument_id).apply_fields(
            rec.action, rec.side, rec.price, rec.size, rec.order_id, rec.flags, rec.sequence, rec.channel_id,
            rec.ts_recv, rec.ts_event,
        )

    def apply_frame(self, frame: MboFrame, on_point: OnPoint | None = None) -> list[tuple[Book, int]]:
        """Apply a frame's records in order; returns (book, index) of each record that was a consistency point.

        ``on_point(book, index)`` is called at each consistency point *while the book is in that state*, so a
        streaming agent can read ``bbo()`` / ``levels()`` there: the returned list is only known after the whole
        frame was applied, when intermediate states are gone.
        """
        book = self.book_for(frame.publisher_id, frame.instrument_id)
        callback = None if on_point is None else lambda i: on_point(book, i)
        return [(book, i) for i in book.apply_frame(frame, callback)]

    def to_state(self) -> MarketState:
        return MarketState(crossed_policy=self.crossed_policy, books=[b.to_state() for b in self._books.values()])

    @classmethod
    def from_state(cls, state: MarketState, *, max_pending_trades: int = 100_000, book_cls: Any = None) -> Market:
        market = cls(state.crossed_policy, max_pending_trades=max_pending_trades, book_cls=book_cls)
        for bs in state.books:
            market._books[(bs.publisher_id, bs.instrument_id)] = market._book_cls.from_state(
                bs, max_pending_trades=max_pending_trades
            )
        return market
