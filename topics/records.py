"""Record schemas: msgspec Structs for every value that crosses a topic.

Prices and sizes are integers, never floats: MBO prices follow Databento's fixed point (1 unit = 1e-9), and so do
exchange tick prices and sizes (see :mod:`topics.fixed`). Every record carries two integer nanosecond timestamps:
``ts_event`` (the venue's event time) and ``ts_recv`` (when it was received, by the venue's capture or by us).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, Literal

import msgspec

UNDEF_PRICE = 9_223_372_036_854_775_807  # Databento's undefined price (INT64_MAX)
PRICE_SCALE = 1_000_000_000  # 1e-9 fixed point

# MBO flags (Databento)
F_LAST = 128  # last record of an event for this instrument: the book is consistent after it
F_TOB = 64  # top-of-book message: replaces the side's best level, not an order
F_SNAPSHOT = 32  # part of a snapshot (a replay of the book, not a live event)
F_MBP = 16  # aggregated price level, not an individual order
F_BAD_TS_RECV = 8  # ts_recv is inaccurate (clock issue or reordering)
F_MAYBE_BAD_BOOK = 4  # an unrecoverable gap was detected in the channel

Action = Literal["A", "C", "M", "R", "T", "F", "N"]
Side = Literal["A", "B", "N"]
ACTIONS = frozenset("ACMRTFN")
SIDES = frozenset("ABN")
_LETTERS = {"action": "".join(sorted(ACTIONS)), "side": "".join(sorted(SIDES))}

UInt8 = Annotated[int, msgspec.Meta(ge=0, le=255)]
UInt16 = Annotated[int, msgspec.Meta(ge=0, le=65_535)]
UInt32 = Annotated[int, msgspec.Meta(ge=0, le=4_294_967_295)]
UInt64 = Annotated[int, msgspec.Meta(ge=0)]  # msgspec caps ints at uint64 itself
Int64 = Annotated[int, msgspec.Meta(ge=-9_223_372_036_854_775_808, le=9_223_372_036_854_775_807)]
Int32 = Annotated[int, msgspec.Meta(ge=-2_147_483_648, le=2_147_483_647)]
TsNs = Annotated[int, msgspec.Meta(ge=0)]  # UNIX ns; UNDEF_TIMESTAMP is UINT64_MAX
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]

# Every record is frozen data decoded from bytes: it can never sit in a reference cycle, so it is created untracked
# by the cyclic garbage collector (``gc=False``). Sinks and workers hold hundreds of thousands of them in their
# batches, and each full collection would otherwise walk them all.


class MboRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One market-by-order event, Databento's MBO schema (rtype 160)."""

    ts_recv: TsNs  # capture-server receive time, ns since the UNIX epoch
    ts_event: TsNs  # matching-engine event time, ns since the UNIX epoch
    publisher_id: UInt16  # Databento publisher (dataset + venue)
    instrument_id: UInt32  # numeric instrument id
    action: Action  # A add, C cancel, M modify, R clear book, T trade, F fill, N none
    side: Side  # A ask (sell), B bid (buy), N none
    price: Int64  # 1e-9 fixed point; UNDEF_PRICE when undefined
    size: UInt32  # order quantity
    channel_id: UInt8 = 0  # venue channel; the sequence is per channel
    order_id: UInt64  # venue order id
    flags: UInt8 = 0  # bit field: F_LAST, F_TOB, F_SNAPSHOT, F_MBP, F_BAD_TS_RECV, F_MAYBE_BAD_BOOK
    ts_in_delta: Int32 = 0  # matching-engine send time minus ts_recv, ns
    sequence: UInt32 = 0  # venue message sequence number


_FRAME_COLUMNS = (
    "ts_recv", "ts_event", "price", "size", "channel_id", "order_id", "flags", "ts_in_delta", "sequence",
)


class MboFrame(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Consecutive MBO records of one (publisher_id, instrument_id), stored column by column.

    A frame never splits an F_LAST event: it ends with an F_LAST record unless the producer flushed it at the end
    of its input. Columns keep the wire small and fast to encode and decode; ``action`` and ``side`` are strings
    with one character per record. :meth:`records` yields the rows as :class:`MboRecord`.
    """

    publisher_id: UInt16  # Databento publisher of every record in the frame
    instrument_id: UInt32  # instrument of every record in the frame
    symbol: str | None = None  # raw symbol when the source knows it, for display
    ts_recv: list[TsNs]  # per record, see MboRecord
    ts_event: list[TsNs]
    action: str  # one character per record, from ACMRTFN
    side: str  # one character per record, from ABN
    price: list[Int64]
    size: list[UInt32]
    channel_id: list[UInt8]
    order_id: list[UInt64]
    flags: list[UInt8]
    ts_in_delta: list[Int32]
    sequence: list[UInt32]
    ts_sent: TsNs = 0  # producer wall clock when the frame was sent, ns (0: unknown)

    def __len__(self) -> int:
        return len(self.action)

    def records(self) -> Iterator[MboRecord]:
        """The frame's rows, in order."""
        pub, inst = self.publisher_id, self.instrument_id
        for ts_recv, ts_event, action, side, price, size, chan, oid, flags, delta, seq in zip(
            self.ts_recv, self.ts_event, self.action, self.side, self.price, self.size, self.channel_id,
            self.order_id, self.flags, self.ts_in_delta, self.sequence, strict=True,
        ):
            yield MboRecord(
                ts_recv=ts_recv, ts_event=ts_event, publisher_id=pub, instrument_id=inst, action=action,
                side=side, price=price, size=size, channel_id=chan, order_id=oid, flags=flags,
                ts_in_delta=delta, sequence=seq,
            )

    @classmethod
    def from_records(cls, records: Iterable[MboRecord], symbol: str | None = None, ts_sent: int = 0) -> MboFrame:
        """A frame of ``records``, which must all share one publisher_id and instrument_id."""
        rows = list(records)
        if not rows:
            raise ValueError("a frame needs at least one record")
        pub, inst = rows[0].publisher_id, rows[0].instrument_id
        for i, r in enumerate(rows):
            if r.publisher_id != pub or r.instrument_id != inst:
                raise ValueError(
                    f"record {i} is ({r.publisher_id}, {r.instrument_id}); frame is ({pub}, {inst})"
                )
        return cls(
            publisher_id=pub, instrument_id=inst, symbol=symbol,
            ts_recv=[r.ts_recv for r in rows], ts_event=[r.ts_event for r in rows],
            action="".join(r.action for r in rows), side="".join(r.side for r in rows),
            price=[r.price for r in rows], size=[r.size for r in rows],
            channel_id=[r.channel_id for r in rows], order_id=[r.order_id for r in rows],
            flags=[r.flags for r in rows], ts_in_delta=[r.ts_in_delta for r in rows],
            sequence=[r.sequence for r in rows], ts_sent=ts_sent,
        )

    def column_error(self) -> str | None:
        """Why the columns are inconsistent (lengths, action or side letters), or ``None`` when they are fine."""
        n = len(self.action)
        if n == 0:
            return "$.action: a frame needs at least one record"
        if len(self.side) != n:
            return f"$.side: {len(self.side)} values, expected {n} (one per action)"
        for name in _FRAME_COLUMNS:
            got = len(getattr(self, name))
            if got != n:
                return f"$.{name}: {got} values, expected {n} (one per action)"
        for name, allowed in (("action", ACTIONS), ("side", SIDES)):
            text = getattr(self, name)
            if not text.strip(_LETTERS[name]):  # every letter allowed (str.strip runs in C; the loop names the bad one)
                continue
            for i, ch in enumerate(text):
                if ch not in allowed:
                    return f"$.{name}[{i}]: {ch!r} is not one of {''.join(sorted(allowed))}"
        return None


class TradeTick(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A trade reported by a crypto exchange, normalized."""

    venue: str  # e.g. "binance", "coinbase"
    symbol: str  # the venue's own symbol, e.g. "BTCUSDT", "BTC-USD"
    ts_event: TsNs  # venue's trade time, ns
    ts_recv: TsNs  # our receipt time, ns
    price: Int64  # 1e-9 fixed point
    size: NonNegInt  # 1e-9 fixed point, base currency
    side: Side  # aggressor: B buyer, A seller, N unknown
    trade_id: str  # venue trade id, as text


class QuoteTick(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A venue's best bid and offer, normalized."""

    venue: str
    symbol: str
    ts_event: TsNs
    ts_recv: TsNs
    bid_px: Int64 | None  # 1e-9 fixed point; None when the side is empty
    bid_sz: NonNegInt
    ask_px: Int64 | None
    ask_sz: NonNegInt


class L2Level(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A price level change: [price, size]; size 0 removes the level."""

    price: Int64  # 1e-9 fixed point
    size: NonNegInt  # 1e-9 fixed point


class L2Update(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Changes to an exchange L2 book, after the venue's sequence/checksum rules accepted them."""

    venue: str
    symbol: str
    ts_event: TsNs
    ts_recv: TsNs
    sequence: NonNegInt  # venue update id / sequence, 0 when the venue has none
    snapshot: bool = False  # True: the levels replace the whole book
    bids: list[L2Level] = []
    asks: list[L2Level] = []


class Level(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An aggregated book level: [price, size, order count]."""

    price: Int64  # 1e-9 fixed point
    size: NonNegInt  # total resting size
    count: NonNegInt  # resting orders


class BboUpdate(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Top of book after a consistency point (F_LAST) where it changed."""

    publisher_id: UInt16
    instrument_id: UInt32
    ts_event: TsNs  # of the F_LAST record
    ts_recv: TsNs  # of the F_LAST record
    sequence: UInt32  # venue sequence of the F_LAST record
    bid_px: Int64 | None  # None: no bid
    bid_sz: NonNegInt
    bid_ct: NonNegInt
    ask_px: Int64 | None  # None: no ask
    ask_sz: NonNegInt
    ask_ct: NonNegInt
    crossed: bool = False  # best bid >= best ask
    duplicate: bool = False  # re-published after recovery; downstream may already have it


class Mbp10Snapshot(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Up to ten aggregated levels per side, best first."""

    publisher_id: UInt16
    instrument_id: UInt32
    ts_event: TsNs
    ts_recv: TsNs
    sequence: UInt32
    bids: list[Level]
    asks: list[Level]
    crossed: bool = False
    duplicate: bool = False


class BookTrade(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A trade from the MBO feed (action T), or a synthetic fill from the `match` crossed-book policy."""

    publisher_id: UInt16
    instrument_id: UInt32
    ts_event: TsNs
    ts_recv: TsNs
    sequence: UInt32
    price: Int64
    size: UInt32
    side: Side  # aggressor side as the venue reports it
    order_id: UInt64
    synthetic: bool = False  # True: made by the match policy, not reported by the venue
    duplicate: bool = False


AnomalyKind = Literal[
    "crossed", "uncrossed", "unknown_cancel", "unknown_modify", "gap", "maybe_bad_book", "duplicate", "bad_record",
]


class BookAnomaly(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Something wrong or unusual seen while keeping a book."""

    publisher_id: UInt16
    instrument_id: UInt32
    ts_event: TsNs
    ts_recv: TsNs
    sequence: UInt32
    kind: AnomalyKind
    detail: str = ""
    count: NonNegInt = 1  # how many occurrences this record stands for (rate-limited reporting)
    duplicate: bool = False  # re-published after recovery; downstream may already have it


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Input that could not be processed, kept with the reason and where it came from."""

    topic: str  # source topic
    partition: int  # source partition (-1 when not from Kafka)
    offset: int  # source offset (-1 when not from Kafka)
    key: bytes | None  # original key bytes (base64 in JSON)
    value: bytes  # original value bytes (base64 in JSON)
    reason: str  # what was wrong, naming the field
    stage: str  # who rejected it, e.g. "book-agent", "sink"
    ts_recv: TsNs  # when it was rejected, ns


class FeatureBar(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Named feature values of one instrument over one bar."""

    instrument: str  # instrument_id for MBO books, "venue:symbol" for exchange ticks
    ts_event: TsNs  # bar end (exclusive), ns
    interval_ns: NonNegInt  # bar length, ns
    values: dict[str, float | None]  # feature name -> value; None while warming up


class RegimeSignal(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A regime state of one instrument at the close of a bar."""

    instrument: str
    ts_event: TsNs  # bar end, ns
    interval_ns: NonNegInt
    kind: str  # "volatility" or "trend"
    state: str  # e.g. "calm"/"turbulent", "trending"/"mean-reverting"
    probability: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]  # confidence in the state
    changed: bool = False  # True when the state differs from the previous bar's
