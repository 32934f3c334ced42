"""Kraken spot, WebSocket API v1 (``ws.kraken.com``): trade, ticker and book channels.

Data messages are arrays ``[channelID, payload..., channelName, pair]``; events (heartbeat, systemStatus,
subscriptionStatus) are objects.

Book integrity (Kraken, "Spot Websockets (v1) Book Checksum"): every update carries ``"c"``, the CRC32 of the
top 10 asks (low to high) then the top 10 bids (high to low), each level as price then volume with the ``.``
removed and leading zeros stripped, compared as an unsigned 32-bit integer. Updates are applied in array order,
volume 0 removes the level, and the book is truncated to the subscribed depth after each message. A mismatch
resets the book and the connection is re-established (a fresh snapshot per pair).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import msgspec

from producers.exchanges.base import Record, Venue
from producers.exchanges.book import L2Book
from producers.exchanges.fixed import decimals_of, fx, fx_raw, fx_text
from topics.records import L2Level, QuoteTick, TradeTick

CHECKSUM_LEVELS = 10


class BookEntry(msgspec.Struct, frozen=True, array_like=True):
    """``["354.15000000", "5.00000000", "1618678133.365913"]`` (a 4th ``"r"`` marks a republished level)."""

    price: str  # price level, fixed decimals per pair
    volume: str  # absolute volume at the level; "0.00000000" removes it
    timestamp: str  # seconds since the epoch, decimal text
    update_type: str = ""  # "r": republish after a level fell out of the subscribed depth


class BookPayload(msgspec.Struct, frozen=True):
    """Snapshot ``{"as": [...], "bs": [...]}`` or update ``{"a": [...]}`` / ``{"b": [...], "c": "974947235"}``."""

    as_: list[BookEntry] = msgspec.field(name="as", default_factory=list)  # snapshot asks
    bs: list[BookEntry] = msgspec.field(default_factory=list)  # snapshot bids
    a: list[BookEntry] = msgspec.field(default_factory=list)  # updated asks
    b: list[BookEntry] = msgspec.field(default_factory=list)  # updated bids
    c: str = ""  # CRC32 checksum of the book after the whole message, decimal text


class TradeEntry(msgspec.Struct, frozen=True, array_like=True):
    """``["354.11000000", "0.89594024", "1618678142.557535", "s", "l", ""]``"""

    price: str  # trade price
    volume: str  # trade volume
    time: str  # seconds since the epoch, decimal text
    side: str  # "b" buy (buyer aggressor) / "s" sell
    orderType: str  # "m" market / "l" limit
    misc: str  # miscellaneous


class TickerPayload(msgspec.Struct, frozen=True):
    """``{"a": ["13.253900", 35, "35.72892241"], "b": [...], "c": [...], ...}``"""

    a: tuple[str, int, str]  # best ask [price, whole lot volume, lot volume]
    b: tuple[str, int, str]  # best bid [price, whole lot volume, lot volume]


_trades = msgspec.json.Decoder(list[TradeEntry])


class Kraken(Venue):
    name = "kraken"
    url = "wss://ws.kraken.com"
    default_symbols = (
        "WAVES/EUR", "XMR/USD", "KSM/XBT", "GRT/ETH", "SC/EUR", "ETH/CHF", "OCEAN/XBT", "OMG/USD", "XBT/CHF", "ADA/XBT",
    )
    captures = (("kraken/KRAKEN.ws.50.0",), ("kraken/KRAKEN.ws.48.0",), ("kraken/KRAKEN.ws.49.0",))
    book_marker = b'"c":"'
    checksum_field = b'"c":"'
    depth = 1000

    def __init__(self, symbols: Sequence[str] = (), label: str | None = None) -> None:
        super().__init__(symbols, label)
        self._decimals: dict[str, tuple[int, int]] = {}

    def subscribe_messages(self) -> list[str]:
        pairs = list(self.symbols)
        subs: list[dict[str, Any]] = [{"name": "trade"}, {"name": "ticker"}, {"name": "book", "depth": self.depth}]
        return [msgspec.json.encode({"event": "subscribe", "pair": pairs, "subscription": s}).decode() for s in subs]

    def parse(self, raw: bytes, ts_recv: int) -> list[Record]:
        """A v1 frame -> records. Sample (book update with checksum)::

            [992,{"b":[["354.15000000","5.00000000","1618678133.365913"]],"c":"2583817756"},"book-1000","XMR/USD"]
        """
        msg = msgspec.json.decode(raw)
        if isinstance(msg, dict):
            event = msg.get("event")
            return [] if event in ("heartbeat", "systemStatus", "subscriptionStatus", "pong") else self.unknown(
                str(event))
        if not isinstance(msg, list) or len(msg) < 4:
            raise self.fail("expected [channelID, payload, channelName, pair]")
        channel, pair = msg[-2], msg[-1]
        if not isinstance(channel, str) or not isinstance(pair, str):
            raise self.fail("channelName and pair must be strings")
        if channel == "trade":
            return self._trades(pair, msgspec.convert(msg[1], list[TradeEntry]), ts_recv)
        if channel == "ticker":
            return [self._quote(pair, msgspec.convert(msg[1], TickerPayload), ts_recv)]
        if channel.startswith("book"):
            return self._book(pair, [msgspec.convert(p, BookPayload) for p in msg[1:-2]], ts_recv)
        return self.unknown(channel)

    def _trades(self, pair: str, entries: list[TradeEntry], ts_recv: int) -> list[Record]:
        return [
            TradeTick(
                venue=self.name, symbol=pair, ts_event=fx_raw(t.time, "time"), ts_recv=ts_recv,
                price=fx(t.price, "price"), size=fx(t.volume, "volume"), side="B" if t.side == "b" else "A",
                trade_id=f"{t.time}:{i}",
            )
            for i, t in enumerate(entries)
        ]

    def _quote(self, pair: str, t: TickerPayload, ts_recv: int) -> QuoteTick:
        return QuoteTick(
            venue=self.name, symbol=pair, ts_event=ts_recv, ts_recv=ts_recv,  # the ticker has no venue time
            bid_px=fx(t.b[0], "b"), bid_sz=fx(t.b[2], "b"), ask_px=fx(t.a[0], "a"), ask_sz=fx(t.a[2], "a"),
        )

    # --- book -----------------------------------------------------------------------------------------------
    def _book(self, pair: str, parts: list[BookPayload], ts_recv: int) -> list[Record]:
        if parts and (parts[0].as_ or parts[0].bs):
            return self._snapshot(pair, parts[0], ts_recv)
        book = self.book(pair)
        if not book.synced:
            return []  # waiting for the snapshot that the resync brings
        bids = [e for p in parts for e in p.b]
        asks = [e for p in parts for e in p.a]
        checksum = next((p.c for p in parts if p.c), "")
        if not checksum:
            raise self.fail(f"{pair}: book update without checksum")
        bid_lv, ask_lv = _apply(book, bids, asks, self.depth)
        expected, got = int(checksum), self.checksum(pair)
        if expected != got:
            return self.bad_checksum(pair, f"crc32 {got} != venue's {expected}")
        self.stats.checksums_ok += 1
        ts_event = max(fx_raw(e.timestamp, "timestamp") for e in bids + asks) if bids or asks else ts_recv
        return self.book_update(pair, ts_event, ts_recv, 0, bid_lv, ask_lv)

    def _snapshot(self, pair: str, snap: BookPayload, ts_recv: int) -> list[Record]:
        first = (snap.as_ or snap.bs)[0]
        self._decimals[pair] = (decimals_of(first.price), decimals_of(first.volume))
        book = self.book(pair)
        book.clear()
        _apply(book, snap.bs, snap.as_, self.depth)
        book.synced = True
        stamps = [fx_raw(e.timestamp, "timestamp") for e in snap.as_ + snap.bs]
        return self.snapshot_update(pair, max(stamps), ts_recv, 0)

    def checksum(self, pair: str) -> int:
        """Kraken's CRC32 over this book's top 10 asks then top 10 bids."""
        book = self.book(pair)
        pdp, vdp = self._decimals[pair]
        text = "".join(
            fx_text(p, pdp) + fx_text(s, vdp)
            for p, s in book.asks(CHECKSUM_LEVELS) + book.bids(CHECKSUM_LEVELS)
        )
        return zlib.crc32(text.encode())


def _apply(
    book: L2Book, bids: list[BookEntry], asks: list[BookEntry], depth: int,
) -> tuple[list[L2Level], list[L2Level]]:
    bid_lv = [L2Level(fx(e.price, "price"), fx(e.volume, "volume")) for e in bids]
    ask_lv = [L2Level(fx(e.price, "price"), fx(e.volume, "volume")) for e in asks]
    book.apply(bid_lv, ask_lv)
    book.truncate(depth)
    return bid_lv, ask_lv
