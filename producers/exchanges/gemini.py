"""Gemini market data v2 (``/v2/marketdata``): the ``l2`` subscription (``l2_updates`` and ``trade`` messages).

Integrity rules: the first ``l2_updates`` for a symbol after subscribing is the whole book (it also lists recent
trades, which are history and are not republished); later ones are changes with absolute quantities (0 removes).
The v2 feed has no sequence numbers, so the check is structural: changes before the first full book are ignored,
and a book that is crossed after a change cannot be the venue's: it is reset, counted as a gap, and the
connection is re-established (a new full book). Quotes are taken from the book.
"""

from __future__ import annotations

import msgspec

from producers.exchanges.base import Record, Venue
from producers.exchanges.fixed import fx, ms_to_ns
from topics.records import L2Level, TradeTick


class Head(msgspec.Struct, frozen=True):
    """Every message: ``{"type": "l2_updates" | "trade" | "heartbeat" | ..., ...}``"""

    type: str  # message type
    symbol: str = ""  # symbol, e.g. "BTCUSD"
    reason: str = ""  # error messages: why


class L2Updates(msgspec.Struct, frozen=True):
    """``{"type":"l2_updates","symbol":"GRTUSD","changes":[["sell","0.6165","0"]]}``"""

    symbol: str  # symbol
    changes: list[tuple[str, str, str]]  # [side buy|sell, price, absolute quantity]; 0 removes


class Trade(msgspec.Struct, frozen=True):
    """``{"type":"trade","symbol":"ANKRUSD","event_id":45465818387,"timestamp":1624493670759,"price":"0.07946",
    "quantity":"1020.482111","side":"buy"}``"""

    symbol: str  # symbol
    event_id: int  # trade event id
    timestamp: int  # ms since the epoch
    price: str  # price
    quantity: str  # base quantity
    side: str  # taker side: buy | sell


_head = msgspec.json.Decoder(Head)
_l2 = msgspec.json.Decoder(L2Updates)
_trade = msgspec.json.Decoder(Trade)


class Gemini(Venue):
    name = "gemini"
    url = "wss://api.gemini.com/v2/marketdata"
    default_symbols = (
        "BTCGBP", "LINKETH", "FILUSD", "ZECLTC", "BATBTC", "ETHEUR", "LTCETH", "GRTUSD", "ANKRUSD", "ALCXUSD",
    )
    captures = (("gemini/GEMINI.ws.1.0",),)
    quotes_from_book = True
    book_marker = b'"type":"l2_updates"'

    def subscribe_messages(self) -> list[str]:
        req = {"type": "subscribe", "subscriptions": [{"name": "l2", "symbols": list(self.symbols)}]}
        return [msgspec.json.encode(req).decode()]

    def parse(self, raw: bytes, ts_recv: int) -> list[Record]:
        """A v2 market-data frame -> records. Sample (trade)::

            {"type":"trade","symbol":"ANKRUSD","event_id":45465818387,"timestamp":1624493670759,
             "price":"0.07946","quantity":"1020.482111","side":"buy"}
        """
        head = _head.decode(raw)
        if head.type == "l2_updates":
            return self._changes(_l2.decode(raw), ts_recv)
        if head.type == "trade":
            return [self._trade(_trade.decode(raw), ts_recv)]
        if head.type in ("heartbeat", "subscription_ack"):
            return []
        if head.type == "error":
            raise self.fail(f"error: {head.reason}")
        return self.unknown(head.type)

    def _trade(self, t: Trade, ts_recv: int) -> TradeTick:
        return TradeTick(
            venue=self.name, symbol=t.symbol, ts_event=ms_to_ns(t.timestamp), ts_recv=ts_recv,
            price=fx(t.price, "price"), size=fx(t.quantity, "quantity"), side="B" if t.side == "buy" else "A",
            trade_id=str(t.event_id),
        )

    def _changes(self, u: L2Updates, ts_recv: int) -> list[Record]:
        bids: list[L2Level] = []
        asks: list[L2Level] = []
        for side, price, qty in u.changes:
            (bids if side == "buy" else asks).append(L2Level(fx(price, "price"), fx(qty, "quantity")))
        book = self.book(u.symbol)
        if not book.synced:
            book.replace(bids, asks)
            self._last_bbo.pop(u.symbol, None)
            return self.snapshot_update(u.symbol, ts_recv, ts_recv, 0)
        book.apply(bids, asks)
        if book.crossed():
            return self.gap(u.symbol, "book crossed after a change")
        return self.book_update(u.symbol, ts_recv, ts_recv, 0, bids, asks)
