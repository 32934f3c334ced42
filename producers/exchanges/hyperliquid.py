"""Hyperliquid WebSocket (``api.hyperliquid.xyz/ws``): ``l2Book`` and ``trades`` subscriptions per coin.

Integrity rules: every ``l2Book`` message is a complete snapshot of the top levels (``levels`` = [bids, asks]), so
there is nothing to chain; each is published as a snapshot L2Update. Its ``time`` must not go backwards: an older
book than the one already published is skipped and counted (``out_of_order``). Quotes are taken from the book.
"""

from __future__ import annotations

import msgspec

from producers.exchanges.base import Record, Venue
from producers.exchanges.fixed import fx, ms_to_ns
from topics.records import L2Level, TradeTick


class Message(msgspec.Struct, frozen=True):
    """``{"channel": "l2Book" | "trades" | "subscriptionResponse" | "pong", "data": ...}``"""

    channel: str  # message kind
    data: msgspec.Raw = msgspec.Raw(b"null")  # decoded by channel


class Level(msgspec.Struct, frozen=True):
    """``{"n": 5, "px": "105055.0", "sz": "3.03622"}``"""

    px: str  # price
    sz: str  # total size at the level
    n: int = 0  # number of orders


class Book(msgspec.Struct, frozen=True):
    """``{"coin":"BTC","levels":[[bids best first],[asks best first]],"time":1737918843542}``"""

    coin: str  # coin
    levels: tuple[list[Level], list[Level]]  # [bids, asks]
    time: int  # ms since the epoch


class Trade(msgspec.Struct, frozen=True):
    """``{"coin":"BTC","side":"B","px":"105056.0","sz":"0.00219","time":1737918794873,"tid":121451470284048,...}``"""

    coin: str  # coin
    side: str  # aggressor: B buy / A sell
    px: str  # price
    sz: str  # size
    time: int  # ms since the epoch
    tid: int  # trade id


_message = msgspec.json.Decoder(Message)
_book = msgspec.json.Decoder(Book)
_trades = msgspec.json.Decoder(list[Trade])


class Hyperliquid(Venue):
    name = "hyperliquid"
    url = "wss://api.hyperliquid.xyz/ws"
    default_symbols = ("BTC",)
    captures = (("hyperliquid/hftbacktest_hyperliquid_btcusd_20250126.gz",),)
    quotes_from_book = True
    book_marker = b'"channel":"l2Book"'

    def subscribe_messages(self) -> list[str]:
        return [
            msgspec.json.encode({"method": "subscribe", "subscription": {"type": t, "coin": c}}).decode()
            for c in self.symbols for t in ("l2Book", "trades")
        ]

    def parse(self, raw: bytes, ts_recv: int) -> list[Record]:
        """A frame -> records. Sample (trades)::

            {"channel":"trades","data":[{"coin":"BTC","side":"B","px":"105056.0","sz":"0.00219",
             "time":1737918794873,"tid":121451470284048,"hash":"0xde47...","users":["0xe9ed...","0x6802..."]}]}
        """
        m = _message.decode(raw)
        if m.channel == "l2Book":
            return self._book(_book.decode(m.data), ts_recv)
        if m.channel == "trades":
            return [self._trade(t, ts_recv) for t in _trades.decode(m.data)]
        if m.channel in ("subscriptionResponse", "pong"):
            return []
        if m.channel == "error":
            raise self.fail(f"error: {bytes(m.data)[:200]!r}")
        return self.unknown(m.channel)

    def _trade(self, t: Trade, ts_recv: int) -> TradeTick:
        return TradeTick(
            venue=self.name, symbol=t.coin, ts_event=ms_to_ns(t.time), ts_recv=ts_recv, price=fx(t.px, "px"),
            size=fx(t.sz, "sz"), side="B" if t.side == "B" else "A", trade_id=str(t.tid),
        )

    def _book(self, b: Book, ts_recv: int) -> list[Record]:
        book = self.book(b.coin)
        if book.synced and b.time < book.sequence:
            self.stats.out_of_order += 1
            return []
        bids = [L2Level(fx(lv.px, "px"), fx(lv.sz, "sz")) for lv in b.levels[0]]
        asks = [L2Level(fx(lv.px, "px"), fx(lv.sz, "sz")) for lv in b.levels[1]]
        book.replace(bids, asks, b.time)
        return self.snapshot_update(b.coin, ms_to_ns(b.time), ts_recv, b.time)
