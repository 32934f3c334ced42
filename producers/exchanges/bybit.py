"""Bybit derivatives, legacy v1 public WebSocket (``/realtime`` inverse, ``/realtime_public`` USDT perpetuals).

Channels ``trade.<symbol>`` and ``orderBookL2_25.<symbol>`` (25 levels per side, ``snapshot`` then ``delta`` with
``delete``/``update``/``insert`` rows). The two endpoints differ in number formats (prices and ids as text or as
JSON numbers, the USDT snapshot nested in ``order_book``): both are read exactly from the raw JSON text.

Integrity rules: ``cross_seq`` must not decrease; a delta may only ``insert`` a level that is absent and only
``update``/``delete`` a level that is present; the book must not be crossed afterwards. A violation resets the
book, is counted as a gap, and the connection is re-established (a fresh snapshot). Quotes are taken from the book.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from producers.exchanges.base import Record, Venue
from producers.exchanges.book import L2Book
from producers.exchanges.fixed import fx, ms_to_ns, us_to_ns
from topics.records import L2Level, TradeTick


def _text(raw: msgspec.Raw) -> str:
    """A JSON number or string as its exact decimal text."""
    return bytes(raw).strip(b'"').decode()


class Row(msgspec.Struct, frozen=True):
    """``{"price":"1053.90","symbol":"BCHUSDT","id":"10539000","side":"Buy","size":3.66}`` (no size on delete)."""

    price: msgspec.Raw  # price, JSON text or number
    symbol: str  # symbol
    id: msgspec.Raw  # level id (derived from the price)
    side: str  # Buy | Sell
    size: msgspec.Raw = msgspec.Raw(b"0")  # absolute size (contracts or base), JSON number


class Delta(msgspec.Struct, frozen=True):
    """``{"delete": [Row], "update": [Row], "insert": [Row], "transactTimeE6": 0}``"""

    delete: list[Row] = []  # levels removed
    update: list[Row] = []  # levels whose size changed
    insert: list[Row] = []  # levels added


class Message(msgspec.Struct, frozen=True):
    """``{"topic":"orderBookL2_25.BCHUSDT","type":"delta","data":{...},"cross_seq":"864131802","timestamp_e6":...}``"""

    topic: str = ""  # "<channel>.<symbol>"
    type: str = ""  # snapshot | delta (books only)
    data: msgspec.Raw = msgspec.Raw(b"null")  # decoded by channel and type
    cross_seq: msgspec.Raw = msgspec.Raw(b"0")  # matching-engine sequence, text or number
    timestamp_e6: msgspec.Raw = msgspec.Raw(b"0")  # µs since the epoch, text or number
    success: bool | None = None  # subscription answers only
    ret_msg: str = ""  # subscription answers: error text


class UsdtSnapshot(msgspec.Struct, frozen=True):
    """USDT endpoint snapshot data: ``{"order_book": [Row, ...]}``"""

    order_book: list[Row]  # the 25 best levels per side


class Trade(msgspec.Struct, frozen=True):
    """``{"symbol":"BTCUSD","side":"Sell","size":4,"price":60621.5,"trade_time_ms":1618677786614,"trade_id":"5ffb.."}``"""

    symbol: str  # symbol
    side: str  # taker side: Buy | Sell
    size: msgspec.Raw  # size, JSON number
    price: msgspec.Raw  # price, JSON text or number
    trade_time_ms: msgspec.Raw  # ms since the epoch, text or number
    trade_id: str  # trade id


_message = msgspec.json.Decoder(Message)
_rows = msgspec.json.Decoder(list[Row])
_usdt = msgspec.json.Decoder(UsdtSnapshot)
_delta = msgspec.json.Decoder(Delta)
_trades = msgspec.json.Decoder(list[Trade])


def _level(row: Row) -> L2Level:
    return L2Level(fx(_text(row.price), "price"), fx(_text(row.size), "size"))


class Bybit(Venue):
    name = "bybit"
    url = "wss://stream.bybit.com/realtime_public"
    default_symbols = ("BCHUSDT", "XTZUSDT", "UNIUSDT", "LTCUSDT", "DOTUSDT", "LINKUSDT", "ADAUSDT", "ETHUSDT")
    captures = (("bybit/BYBIT.ws.25.0",), ("bybit/BYBIT.ws.26.0",))
    quotes_from_book = True
    book_marker = b'"type":"delta"'

    def __init__(self, symbols: Sequence[str] = (), label: str | None = None) -> None:
        super().__init__(symbols, label)
        self._cross_seq: dict[str, int] = {}

    def subscribe_messages(self) -> list[str]:
        return [
            msgspec.json.encode({"op": "subscribe", "args": [f"{ch}.{s}"]}).decode()
            for s in self.symbols for ch in ("trade", "orderBookL2_25")
        ]

    def parse(self, raw: bytes, ts_recv: int) -> list[Record]:
        """A v1 frame -> records. Sample (inverse book delta)::

            {"topic":"orderBookL2_25.EOSUSD","type":"delta","data":{"delete":[],"update":[{"price":"7.971",
             "symbol":"EOSUSD","id":79710,"side":"Buy","size":47766}],"insert":[],"transactTimeE6":0},
             "cross_seq":1225777225,"timestamp_e6":1618677786598877}
        """
        m = _message.decode(raw)
        if m.success is not None:
            if not m.success:
                raise self.fail(f"subscription refused: {m.ret_msg}")
            return []
        channel, _, symbol = m.topic.partition(".")
        if channel == "trade":
            return [self._trade(t, ts_recv) for t in _trades.decode(m.data)]
        if channel.startswith("orderBookL2"):
            return self._book(symbol, m, ts_recv)
        return self.unknown(channel or "no-topic")

    def _trade(self, t: Trade, ts_recv: int) -> TradeTick:
        return TradeTick(
            venue=self.name, symbol=t.symbol, ts_event=ms_to_ns(int(_text(t.trade_time_ms))), ts_recv=ts_recv,
            price=fx(_text(t.price), "price"), size=fx(_text(t.size), "size"), side="B" if t.side == "Buy" else "A",
            trade_id=t.trade_id,
        )

    def _book(self, symbol: str, m: Message, ts_recv: int) -> list[Record]:
        seq = int(_text(m.cross_seq))
        ts_event = us_to_ns(int(_text(m.timestamp_e6)))
        book = self.book(symbol)
        if m.type == "snapshot":
            data = bytes(m.data)
            rows = _usdt.decode(data).order_book if data.startswith(b"{") else _rows.decode(data)
            bids = [_level(r) for r in rows if r.side == "Buy"]
            asks = [_level(r) for r in rows if r.side == "Sell"]
            book.replace(bids, asks, seq)
            self._last_bbo.pop(symbol, None)
            return self.snapshot_update(symbol, ts_event, ts_recv, seq)
        if m.type != "delta":
            return self.unknown(f"book-{m.type}")
        if not book.synced:
            return []
        if seq < book.sequence:
            return self.gap(symbol, f"cross_seq {seq} < {book.sequence}")
        return self._delta(symbol, book, _delta.decode(m.data), seq, ts_event, ts_recv)

    def _delta(self, symbol: str, book: L2Book, d: Delta, seq: int, ts_event: int, ts_recv: int) -> list[Record]:
        bids: list[L2Level] = []
        asks: list[L2Level] = []
        for rows, must_exist, remove in ((d.delete, True, True), (d.update, True, False), (d.insert, False, False)):
            for r in rows:
                lv = _level(r)
                is_bid = r.side == "Buy"
                present = book.has_bid(lv.price) if is_bid else book.has_ask(lv.price)
                if present != must_exist:
                    return self.gap(symbol, f"{'missing' if must_exist else 'duplicate'} level {_text(r.price)}")
                lv = L2Level(lv.price, 0) if remove else lv
                (book.set_bid if is_bid else book.set_ask)(lv.price, lv.size)
                (bids if is_bid else asks).append(lv)
        book.sequence = seq
        if book.crossed():
            return self.gap(symbol, f"book crossed at cross_seq {seq}")
        return self.book_update(symbol, ts_event, ts_recv, seq, bids, asks)
