"""The book's state as plain msgspec Structs: what :meth:`Book.to_state` returns and :meth:`Book.from_state` takes.

Encoded with msgspec (JSON or msgpack) it is a checkpoint: decoding it and restoring gives a book that behaves
exactly like the original, including idempotency (the dedup state) and priority (arrival stamps).
"""

from __future__ import annotations

import msgspec

from processors.book.levels import PriceLevel
from processors.book.stats import BookStats
from topics.records import BookTrade

STATE_VERSION = 1

# A record's identity within its channel and sequence: (action, side, price, size, order_id, flags, ts_recv, ts_event)
Fingerprint = tuple[str, str, int, int, int, int, int, int]


class OrderState(msgspec.Struct, frozen=True, array_like=True):
    """One resting order: [order_id, size, arrival]. ``arrival`` orders time priority across the whole book."""

    order_id: int
    size: int
    arrival: int


class LevelState(msgspec.Struct, frozen=True, kw_only=True):
    """One price level, orders in priority order. ``tob_order_id`` names the F_TOB entry, which is not an order."""

    price: int
    orders: list[OrderState]
    tob_order_id: int | None = None


class ChannelState(msgspec.Struct, frozen=True, kw_only=True):
    """Replay detection of one channel (see :mod:`processors.book.dedup`)."""

    channel_id: int
    seq: int  # highest sequence applied, -1 when none
    group: list[Fingerprint]  # fingerprints applied at seq, in order
    cursor: int  # replay cursor into group
    last_fp: Fingerprint | None = None  # the channel's previous record


class DedupState(msgspec.Struct, frozen=True, kw_only=True):
    """Idempotency state of one book."""

    ts_high: int  # highest ts_recv applied, -1 when none
    last_clear_ts: int  # ts_recv of the last R applied or snapshot begun, -1 when none
    snapshot_open: bool  # a snapshot is being received
    after_clear: bool = False  # the last record applied was an R
    channels: list[ChannelState]


class BookState(msgspec.Struct, kw_only=True):
    """A whole book: levels best first with orders in priority order, counters, dedup state, undrained trades."""

    version: int = STATE_VERSION
    publisher_id: int
    instrument_id: int
    crossed_policy: str
    bids: list[LevelState]  # best (highest) first
    asks: list[LevelState]  # best (lowest) first
    arrival: int  # last arrival stamp handed out
    stats: BookStats
    dedup: DedupState
    trades: list[BookTrade] = []  # trades not yet taken with take_trades()


def level_state(price: int, level: PriceLevel) -> LevelState:
    """The state of one live level."""
    return LevelState(
        price=price, orders=[OrderState(oid, o.size, o.arrival) for oid, o in level.orders.items()],
        tob_order_id=level.tob_oid,
    )


def copy_stats(stats: BookStats) -> BookStats:
    """An independent copy (the by_action dict included)."""
    copy = BookStats(**{f: getattr(stats, f) for f in stats.__struct_fields__})
    copy.by_action = dict(stats.by_action)
    return copy
