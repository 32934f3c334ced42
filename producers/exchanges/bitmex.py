"""BitMEX realtime WebSocket (``/realtime``): ``orderBookL2``, ``quote`` and ``trade`` tables.

Integrity rules (BitMEX, "Subscriptions" and the ``orderBookL2`` keys ``symbol, id, side``): a table is usable only
after its ``partial``; ``insert`` must name a new level id, ``update`` and ``delete`` a known one (updates carry no
price: the id maps to it). A violation means the local table diverged: the book is reset, the event counted as a
gap, and the connection re-established (a new ``partial``). Prices are JSON numbers, read exactly as decimals.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import msgspec

from producers.exchanges.base import Record, Venue
from producers.exchanges.fixed import fx_num, iso_to_ns
from topics.records import L2Level, QuoteTick, TradeTick


class Message(msgspec.Struct, frozen=True):
    """``{"table":"orderBookL2","action":"update","data":[...]}`` or ``{"info":...}``/``{"success":true,...}``"""

    table: str = ""  # orderBookL2 | quote | trade | ...
    action: str = ""  # partial | insert | update | delete
    data: msgspec.Raw = msgspec.Raw(b"[]")  # rows, decoded by table
    success: bool | None = None  # subscription answers
    info: str = ""  # the welcome message
    error: str = ""  # error text


class BookRow(msgspec.Struct, frozen=True):
    """``{"symbol":"SOLUSDT","id":54899972480,"side":"Sell","size":991,"price":27.52}`` (no price on update)."""

    symbol: str  # instrument
    id: int  # level id
    side: str  # Buy | Sell
    size: int = 0  # contracts at the level (absent on delete)
    price: Decimal | None = None  # level price (partial and insert only)


class Quote(msgspec.Struct, frozen=True):
    """``{"timestamp":"2021-07-22T22:36:10.014Z","symbol":"UNIUSDT","bidSize":750,"bidPrice":17.277,...}``"""

    timestamp: str  # ISO-8601 UTC
    symbol: str  # instrument
    bidSize: int | None = None  # contracts at the best bid
    bidPrice: Decimal | None = None  # best bid (null: none)
    askPrice: Decimal | None = None  # best ask
    askSize: int | None = None  # contracts at the best ask


class Trade(msgspec.Struct, frozen=True):
    """``{"timestamp":"...Z","symbol":"XBTUSD","side":"Buy","size":100,"price":32180.5,"trdMatchID":"6e70..."}``"""

    timestamp: str  # ISO-8601 UTC
    symbol: str  # instrument
    side: str  # taker side: Buy | Sell
    size: int  # contracts
    price: Decimal  # price
    trdMatchID: str  # trade id


_message = msgspec.json.Decoder(Message)
_book = msgspec.json.Decoder(list[BookRow])
_quotes = msgspec.json.Decoder(list[Quote])
_trades = msgspec.json.Decoder(list[Trade])

Side = tuple[bool, int]  # (is_bid, price)


class Bitmex(Venue):
    name = "bitmex"
    url = "wss://ws.bitmex.com/realtime"
    default_symbols = (
        "XRPU21", "UNIUSDT", "XBTUSD", "ADAUSDT", "SOLUSDT", "TRXU21", "EOSUSDT", "TRXUSDT", "BCHUSD", "MATICUSDT",
    )
    captures = (("bitmex/BITMEX.ws.1.0",),)
    book_marker = b'"table":"orderBookL2","action":"update"'

    def __init__(self, symbols: Sequence[str] = (), label: str | None = None) -> None:
        super().__init__(symbols, label)
        self._ids: dict[str, dict[int, Side]] = {}

    def subscribe_messages(self) -> list[str]:
        return [
            msgspec.json.encode({"op": "subscribe", "args": [f"{t}:{s}" for s in self.symbols]}).decode()
            for t in ("orderBookL2", "quote", "trade")
        ]

    def reset(self) -> None:
        super().reset()
        self._ids.clear()

    def parse(self, raw: bytes, ts_recv: int) -> list[Record]:
        """A realtime frame -> records. Sample (book insert)::

            {"table":"orderBookL2","action":"insert","data":[{"symbol":"SOLUSDT","id":54899972480,"side":"Sell",
             "size":991,"price":27.52}]}
        """
        m = _message.decode(raw)
        if m.table == "orderBookL2":
            return self._book(m.action, _book.decode(m.data), ts_recv)
        if m.table == "quote":
            return [self._quote(q, ts_recv) for q in _quotes.decode(m.data)] if m.action != "partial" else []
        if m.table == "trade":
            return [self._trade(t, ts_recv) for t in _trades.decode(m.data)] if m.action != "partial" else []
        if m.error:
            raise self.fail(f"error: {m.error}")
        if m.success is not None or m.info:
            return []
        return self.unknown(m.table or "no-table")

    def _quote(self, q: Quote, ts_recv: int) -> QuoteTick:
        return QuoteTick(
            venue=self.name, symbol=q.symbol, ts_event=iso_to_ns(q.timestamp), ts_recv=ts_recv,
            bid_px=fx_num(q.bidPrice, "bidPrice") if q.bidPrice is not None else None, bid_sz=(q.bidSize or 0) * 10**9,
            ask_px=fx_num(q.askPrice, "askPrice") if q.askPrice is not None else None, ask_sz=(q.askSize or 0) * 10**9,
        )

    def _trade(self, t: Trade, ts_recv: int) -> TradeTick:
        return TradeTick(
            venue=self.name, symbol=t.symbol, ts_event=iso_to_ns(t.timestamp), ts_recv=ts_recv,
            price=fx_num(t.price, "price"), size=t.size * 10**9, side="B" if t.side == "Buy" else "A",
            trade_id=t.trdMatchID,
        )

    def _book(self, action: str, rows: list[BookRow], ts_recv: int) -> list[Record]:
        by_symbol: dict[str, list[BookRow]] = {}
        for r in rows:
            by_symbol.setdefault(r.symbol, []).append(r)
        out: list[Record] = []
        for symbol, srows in by_symbol.items():
            out.extend(self._partial(symbol, srows, ts_recv) if action == "partial" else
                       self._change(symbol, action, srows, ts_recv))
        return out

    def _partial(self, symbol: str, rows: list[BookRow], ts_recv: int) -> list[Record]:
        ids = self._ids[symbol] = {}
        bids: list[L2Level] = []
        asks: list[L2Level] = []
        for r in rows:
            if r.price is None:
                raise self.fail(f"{symbol}: partial row {r.id} without price")
            price = fx_num(r.price, "price")
            ids[r.id] = (r.side == "Buy", price)
            (bids if r.side == "Buy" else asks).append(L2Level(price, r.size * 10**9))
        self.book(symbol).replace(bids, asks)
        return self.snapshot_update(symbol, ts_recv, ts_recv, 0)

    def _change(self, symbol: str, action: str, rows: list[BookRow], ts_recv: int) -> list[Record]:
        book = self.book(symbol)
        if not book.synced:
            return []
        ids = self._ids[symbol]
        bids: list[L2Level] = []
        asks: list[L2Level] = []
        for r in rows:
            known = ids.get(r.id)
            if (action == "insert") == (known is not None):
                return self.gap(symbol, f"{action} of {'known' if known else 'unknown'} level id {r.id}")
            if action == "insert":
                if r.price is None:
                    raise self.fail(f"{symbol}: insert of level {r.id} without price")
                known = ids[r.id] = (r.side == "Buy", fx_num(r.price, "price"))
            elif action == "delete":
                del ids[r.id]
            assert known is not None
            lv = L2Level(known[1], 0 if action == "delete" else r.size * 10**9)
            (book.set_bid if known[0] else book.set_ask)(lv.price, lv.size)
            (bids if known[0] else asks).append(lv)
        return self.book_update(symbol, ts_recv, ts_recv, 0, bids, asks)
