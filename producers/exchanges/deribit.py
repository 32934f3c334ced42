"""Deribit JSON-RPC WebSocket API v2: ``book.<instrument>.raw``, ``ticker.<instrument>.raw``, ``trades.<...>.raw``.

Integrity rule (Deribit, notifications of ``book.{instrument_name}.{interval}``): the first notification is a
``snapshot``; each ``change`` carries ``prev_change_id``, which must equal the ``change_id`` of the previous
notification for that instrument. A break resets the book, is counted as a gap, and the connection is
re-established (a fresh snapshot). Level entries are ``[action new|change|delete, price, amount]`` with absolute
amounts. Numbers are JSON numbers; they are decoded exactly (as decimals), never through floats.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from producers.exchanges.base import Record, Venue
from producers.exchanges.fixed import fx_num, ms_to_ns
from topics.records import L2Level, QuoteTick, TradeTick


class Params(msgspec.Struct, frozen=True):
    """``{"channel": "book.BTC-24SEP21-8000-P.raw", "data": {...}}``"""

    channel: str  # "<kind>.<instrument>.<interval>"
    data: msgspec.Raw  # decoded by kind


class Message(msgspec.Struct, frozen=True):
    """``{"jsonrpc":"2.0","method":"subscription","params":{...}}`` or a response ``{"id":0,"result":[...]}``"""

    jsonrpc: str = "2.0"  # protocol version
    method: str = ""  # subscription | heartbeat
    params: Params | None = None  # subscription notifications
    id: int | None = None  # responses: the request id
    error: dict[str, object] | None = None  # responses: the error object


class BookData(msgspec.Struct, frozen=True):
    """``{"type":"change","timestamp":1626993724318,"prev_change_id":33195894164,"instrument_name":"BTC-...",
    "change_id":33195894355,"bids":[],"asks":[["new",0.001,2.6]]}``"""

    type: str  # snapshot | change
    timestamp: int  # ms since the epoch
    instrument_name: str  # instrument
    change_id: int  # this notification's id
    bids: list[tuple[str, Decimal, Decimal]]  # [action, price, absolute amount]
    asks: list[tuple[str, Decimal, Decimal]]
    prev_change_id: int = -1  # the previous notification's change_id (changes only)


class Ticker(msgspec.Struct, frozen=True):
    """``{"instrument_name":"ETH-30JUL21-2800-C","timestamp":1626993723632,"best_bid_price":0.0015,...}``"""

    instrument_name: str  # instrument
    timestamp: int  # ms since the epoch
    best_bid_price: Decimal | None = None  # 0 or null: no bid
    best_bid_amount: Decimal = Decimal(0)  # size at the best bid
    best_ask_price: Decimal | None = None  # 0 or null: no ask
    best_ask_amount: Decimal = Decimal(0)  # size at the best ask


class Trade(msgspec.Struct, frozen=True):
    """``{"trade_id":"123","timestamp":1626993723632,"price":0.0015,"amount":1.0,"direction":"buy",...}``"""

    trade_id: str  # trade id
    instrument_name: str  # instrument
    timestamp: int  # ms since the epoch
    price: Decimal  # price
    amount: Decimal  # amount (contracts)
    direction: str  # taker direction: buy | sell


_message = msgspec.json.Decoder(Message)
_book = msgspec.json.Decoder(BookData)
_ticker = msgspec.json.Decoder(Ticker)
_trades = msgspec.json.Decoder(list[Trade])


def _levels(rows: list[tuple[str, Decimal, Decimal]]) -> list[L2Level]:
    return [L2Level(fx_num(p, "price"), 0 if a == "delete" else fx_num(s, "amount")) for a, p, s in rows]


def _side(price: Decimal | None, amount: Decimal) -> tuple[int | None, int]:
    if price is None or not price:
        return None, 0
    return fx_num(price, "price"), fx_num(amount, "amount")


class Deribit(Venue):
    name = "deribit"
    url = "wss://www.deribit.com/ws/api/v2"
    default_symbols = (
        "BTC-24SEP21-8000-P", "BTC-30JUL21-24000-P", "ETH-30JUL21-2800-C", "BTC-31DEC21-34000-P",
        "BTC-24SEP21-34000-P", "BTC-24JUN22-15000-C", "BTC-31DEC21-300000-C", "ETH-27AUG21-4000-P",
        "BTC-25MAR22-30000-C", "ETH-23JUL21-2300-C",
    )
    captures = (("deribit/DERIBIT.ws.1.0",),)
    book_marker = b'"type":"change"'

    def subscribe_messages(self) -> list[str]:
        channels = [f"{k}.{s}.raw" for k in ("book", "trades", "ticker") for s in self.symbols]
        req = {"jsonrpc": "2.0", "id": 0, "method": "public/subscribe", "params": {"channels": channels}}
        return [msgspec.json.encode(req).decode()]

    def parse(self, raw: bytes, ts_recv: int) -> list[Record]:
        """A JSON-RPC frame -> records. Sample (book change)::

            {"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-24SEP21-8000-P.raw","data":{
             "type":"change","timestamp":1626993724318,"prev_change_id":33195894164,"instrument_name":
             "BTC-24SEP21-8000-P","change_id":33195894355,"bids":[],"asks":[["new",0.001,2.6]]}}}
        """
        m = _message.decode(raw)
        if m.params is None:
            if m.error:
                raise self.fail(f"error response: {m.error}")
            return [] if m.id is not None or m.method == "heartbeat" else self.unknown(m.method or "no-method")
        kind = m.params.channel.partition(".")[0]
        if kind == "book":
            return self._book(_book.decode(m.params.data), ts_recv)
        if kind == "ticker":
            return [self._quote(_ticker.decode(m.params.data), ts_recv)]
        if kind == "trades":
            return [self._trade(t, ts_recv) for t in _trades.decode(m.params.data)]
        return self.unknown(kind)

    def _quote(self, t: Ticker, ts_recv: int) -> QuoteTick:
        bid_px, bid_sz = _side(t.best_bid_price, t.best_bid_amount)
        ask_px, ask_sz = _side(t.best_ask_price, t.best_ask_amount)
        return QuoteTick(
            venue=self.name, symbol=t.instrument_name, ts_event=ms_to_ns(t.timestamp), ts_recv=ts_recv,
            bid_px=bid_px, bid_sz=bid_sz, ask_px=ask_px, ask_sz=ask_sz,
        )

    def _trade(self, t: Trade, ts_recv: int) -> TradeTick:
        return TradeTick(
            venue=self.name, symbol=t.instrument_name, ts_event=ms_to_ns(t.timestamp), ts_recv=ts_recv,
            price=fx_num(t.price, "price"), size=fx_num(t.amount, "amount"),
            side="B" if t.direction == "buy" else "A", trade_id=t.trade_id,
        )

    def _book(self, d: BookData, ts_recv: int) -> list[Record]:
        sym, book = d.instrument_name, self.book(d.instrument_name)
        bids, asks = _levels(d.bids), _levels(d.asks)
        if d.type == "snapshot":
            book.replace(bids, asks, d.change_id)
            return self.snapshot_update(sym, ms_to_ns(d.timestamp), ts_recv, d.change_id)
        if not book.synced:
            return []
        if d.prev_change_id != book.sequence:
            return self.gap(sym, f"prev_change_id {d.prev_change_id} != last change_id {book.sequence}")
        book.apply(bids, asks)
        book.sequence = d.change_id
        return self.book_update(sym, ms_to_ns(d.timestamp), ts_recv, d.change_id, bids, asks)
