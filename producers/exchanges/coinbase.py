"""Coinbase Exchange (legacy Pro feed, ``ws-feed.pro.coinbase.com``): level2, ticker and matches channels.

Integrity rules: a ``level2`` book starts from its ``snapshot`` message; ``l2update`` changes (absolute sizes, 0
removes) before a snapshot are ignored. The level2 channel carries no sequence number, so the sequenced messages
(``ticker`` and ``match``, whose ``sequence`` is the product's feed sequence) must be strictly increasing per
channel and product (a ticker repeats its trade's sequence): an older or repeated sequence is skipped and counted
(``out_of_order``). A book that is crossed after an update cannot be the venue's book: it is reset, counted as a
gap, and the connection is re-established (a fresh snapshot). Quotes are taken from the book (the legacy ticker has
no sizes).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from producers.exchanges.base import Record, Venue, levels
from producers.exchanges.fixed import fx, iso_to_ns
from topics.records import L2Level, TradeTick


class Head(msgspec.Struct, frozen=True):
    """Every message: ``{"type": "l2update", "product_id": "SKL-BTC", ...}``"""

    type: str  # snapshot | l2update | ticker | match | last_match | subscriptions | heartbeat | error
    product_id: str = ""  # product, e.g. "BTC-USD"
    message: str = ""  # error text of an error message


class Snapshot(msgspec.Struct, frozen=True):
    """``{"type":"snapshot","product_id":"BAND-GBP","asks":[["14.8024","12.77"]],"bids":[...]}``"""

    product_id: str  # product
    bids: list[list[str]]  # [price, size], best first
    asks: list[list[str]]


class L2Change(msgspec.Struct, frozen=True):
    """``{"type":"l2update","product_id":"SKL-BTC","changes":[["sell","0.00001306","660.5"]],"time":"...Z"}``"""

    product_id: str  # product
    changes: list[tuple[str, str, str]]  # [side buy|sell, price, new absolute size]; size 0 removes
    time: str  # ISO-8601 UTC


class Match(msgspec.Struct, frozen=True):
    """``{"type":"match","trade_id":280232,"side":"sell","size":"985","price":"0.00001305","sequence":177100030,...}``"""

    trade_id: int  # trade id, per product
    side: str  # the MAKER order's side: "sell" means the aggressor bought
    size: str  # base size
    price: str  # price
    product_id: str  # product
    sequence: int  # product feed sequence
    time: str  # ISO-8601 UTC


class Ticker(msgspec.Struct, frozen=True):
    """``{"type":"ticker","sequence":333938798,"product_id":"BAND-GBP","best_bid":"14.7550","best_ask":"14.8060",...}``"""

    sequence: int  # product feed sequence
    product_id: str  # product
    best_bid: str = ""  # best bid price (no size in this feed)
    best_ask: str = ""  # best ask price


_head = msgspec.json.Decoder(Head)
_snapshot = msgspec.json.Decoder(Snapshot)
_l2 = msgspec.json.Decoder(L2Change)
_match = msgspec.json.Decoder(Match)
_ticker = msgspec.json.Decoder(Ticker)


class Coinbase(Venue):
    name = "coinbase"
    url = "wss://ws-feed.exchange.coinbase.com"
    default_symbols = (
        "SKL-USD", "SKL-BTC", "BAND-GBP", "NMR-EUR", "BAND-BTC", "YFI-BTC", "DASH-BTC", "NU-GBP", "CRV-EUR", "SKL-GBP",
    )
    captures = (("coinbase/COINBASE.ws.28.0",),)
    quotes_from_book = True
    book_marker = b'"type":"match"'

    def __init__(self, symbols: Sequence[str] = (), label: str | None = None) -> None:
        super().__init__(symbols, label)
        self._seq: dict[tuple[str, str], int] = {}  # (channel, product) -> last sequence

    def subscribe_messages(self) -> list[str]:
        return [
            msgspec.json.encode({"type": "subscribe", "product_ids": list(self.symbols), "channels": [ch]}).decode()
            for ch in ("level2", "ticker", "matches")
        ]

    def reset(self) -> None:
        super().reset()
        self._seq.clear()

    def parse(self, raw: bytes, ts_recv: int) -> list[Record]:
        """A feed message -> records. Sample (level2 change)::

            {"type":"l2update","product_id":"SKL-BTC","changes":[["sell","0.00001306","660.5"]],
             "time":"2021-04-17T16:43:37.075687Z"}
        """
        kind = _head.decode(raw)
        t = kind.type
        if t == "l2update":
            return self._update(_l2.decode(raw), ts_recv)
        if t == "match":
            return self._match(_match.decode(raw), ts_recv)
        if t == "ticker":
            tick = _ticker.decode(raw)
            self._in_sequence("ticker", tick.product_id, tick.sequence)
            return []  # prices only, and the same trade as the match: quotes come from the book
        if t == "snapshot":
            return self._snapshot(_snapshot.decode(raw), ts_recv)
        if t in ("subscriptions", "heartbeat", "last_match"):
            return []  # last_match repeats a trade from before the subscription
        if t == "error":
            raise self.fail(f"error message: {kind.message}")
        return self.unknown(t)

    def _in_sequence(self, channel: str, product: str, sequence: int) -> bool:
        key = (channel, product)
        last = self._seq.get(key, -1)
        if sequence <= last:
            self.stats.out_of_order += 1
            return False
        self._seq[key] = sequence
        return True

    def _match(self, m: Match, ts_recv: int) -> list[Record]:
        if not self._in_sequence("matches", m.product_id, m.sequence):
            return []
        return [TradeTick(
            venue=self.name, symbol=m.product_id, ts_event=iso_to_ns(m.time), ts_recv=ts_recv,
            price=fx(m.price, "price"), size=fx(m.size, "size"), side="B" if m.side == "sell" else "A",
            trade_id=str(m.trade_id),
        )]

    def _snapshot(self, s: Snapshot, ts_recv: int) -> list[Record]:
        self.book(s.product_id).replace(levels(s.bids, "bids"), levels(s.asks, "asks"))
        self._last_bbo.pop(s.product_id, None)
        return self.snapshot_update(s.product_id, ts_recv, ts_recv, 0)

    def _update(self, u: L2Change, ts_recv: int) -> list[Record]:
        book = self.book(u.product_id)
        if not book.synced:
            return []
        bids: list[L2Level] = []
        asks: list[L2Level] = []
        for side, price, size in u.changes:
            (bids if side == "buy" else asks).append(L2Level(fx(price, "price"), fx(size, "size")))
        book.apply(bids, asks)
        if book.crossed():
            return self.gap(u.product_id, f"book crossed after update at {u.time}")
        return self.book_update(u.product_id, iso_to_ns(u.time), ts_recv, 0, bids, asks)
