"""Helpers of the exchange tests: independent readings of raw frames, book comparisons, async waiting."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from producers.exchanges.base import Record, Venue
from producers.exchanges.capture import CaptureFrame
from topics.records import L2Update, QuoteTick, TradeTick

SCALE = Decimal(10) ** 9


def fixed(value: Any) -> int:
    """Independent exact conversion (Decimal), to check the connectors' own parsing against."""
    d = Decimal(value) if isinstance(value, str) else Decimal(str(value))
    scaled = d * SCALE
    assert scaled == scaled.to_integral_value(), f"{value} has more than 9 decimals"
    return int(scaled)


def raw_json(frames: Iterable[CaptureFrame], needle: bytes) -> list[Any]:
    """Received frames containing ``needle``, parsed with the standard library (exact decimals)."""
    return [
        json.loads(f.payload, parse_float=Decimal) for f in frames if f.kind == "recv" and needle in f.payload
    ]


def of_type(records: Iterable[Record], kind: type) -> list[Any]:
    return [r for r in records if type(r) is kind]


def trades(records: Iterable[Record]) -> list[TradeTick]:
    return of_type(records, TradeTick)


def quotes(records: Iterable[Record]) -> list[QuoteTick]:
    return of_type(records, QuoteTick)


def books(records: Iterable[Record]) -> list[L2Update]:
    return of_type(records, L2Update)


def book_state(venue: Venue) -> dict[str, tuple[list[tuple[int, int]], list[tuple[int, int]]]]:
    """Every synced book of a venue as plain levels."""
    return {s: (b.bids(), b.asks()) for s, b in venue.books.items() if b.synced}


async def wait_for(condition: Callable[[], bool], limit_s: float = 60.0, what: str = "condition") -> None:
    """Wait until ``condition()`` holds; fails (not a timing assertion: a hang guard) after ``limit_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)
