"""Exceptions of the book engine: one base, :class:`BookError`, for everything it raises."""

from __future__ import annotations


class BookError(Exception):
    """Base of every error raised by :mod:`processors.book`."""


class PolicyError(BookError, ValueError):
    """An unknown crossed-book policy name."""


class SideError(BookError, ValueError):
    """A query for a side other than "B" (bids) or "A" (asks)."""


class WrongBookError(BookError, ValueError):
    """A record given to a book of another (publisher_id, instrument_id)."""


class StateError(BookError, ValueError):
    """A :class:`~processors.book.state.BookState` that cannot be restored (wrong version or inconsistent)."""
