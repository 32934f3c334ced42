"""OKX, public WebSocket API v5 (``/ws/v5/public``): trades, tickers and books channels.

Book integrity (OKX, "Checksum" of the order book channel): each ``books`` message carries ``checksum``, the
CRC32 of the string ``bid1px:bid1sz:ask1px:ask1sz:bid2px:...`` over the top 25 levels of the book after the
message (when one side has fewer levels the other side's levels simply continue), compared as a *signed* 32-bit
integer. Prices and sizes are the venue's decimal text, which OKX sends without trailing zeros. Newer messages also
carry ``prevSeqId``/``seqId``: ``prevSeqId`` must equal the previous message's ``seqId``. A mismatch resets the
book and the connection is re-established for a fresh snapshot.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import msgspec

from producers.exchanges.base import Record, Venue
from producers.exchanges.book import L2Book
from producers.exchanges.fixed import fx, ms_to_ns
from topics.fixed import format_fixed
from topics.records import L2Level, QuoteTick, TradeTick

CHECKSUM_LEVELS = 25


class Arg(msgspec.Struct, frozen=True):
    """``{"channel": "books", "instId": "BTC-USDT"}``"""

    channel: str  # books | trades | tickers | ...
    instId: str = ""  # instrument id


class Message(msgspec.Struct, frozen=True):
    """``{"arg": {...}, "action": "update", "data": [...]}`` or an event ``{"event": "subscribe", "arg": {...}}``."""

    arg: Arg | None = None  # the subscription the message belongs to
    data: msgspec.Raw = msgspec.Raw(b"[]")  # channel payload, decoded by channel
    action: str = ""  # books only: "snapshot" or "update"
    event: str = ""  # control messages: subscribe, unsubscribe, error
    code: str = ""  # error code of an error event
    msg: str = ""  # error text of an error event


class BookData(msgspec.Struct, frozen=True):
    """``{"asks": [["30249.4","0","0","0"]], "bids": [...], "ts": "1652459225464", "checksum": -914047754}``"""

    asks: list[list[str]]  # [price, size, deprecated liquidated orders, orders]; size "0" removes
    bids: list[list[str]]
    ts: str  # ms since the epoch, text
    checksum: int = 0  # signed CRC32 of the top 25 levels after this message
    prevSeqId: int = -1  # sequence of the previous message (-1 on snapshots / old API)
    seqId: int = -1  # this message's sequence


class Trade(msgspec.Struct, frozen=True):
    """``{"instId":"BTC-USD-220527","tradeId":"7849","px":"30218.8","sz":"1","side":"buy","ts":"1652459199958"}``"""

    instId: str  # instrument
    tradeId: str  # trade id
    px: str  # price
    sz: str  # size (contracts for derivatives)
    side: str  # taker side: buy / sell
    ts: str  # ms since the epoch, text


class Ticker(msgspec.Struct, frozen=True):
    """``{"instId":"BTC-USD-220527","askPx":"30220.1","askSz":"3","bidPx":"30210.4","bidSz":"4","ts":"..."}``"""

    instId: str  # instrument
    askPx: str  # best ask price ("" when none)
    askSz: str  # best ask size
    bidPx: str  # best bid price
    bidSz: str  # best bid size
    ts: str  # ms since the epoch, text


_message = msgspec.json.Decoder(Message)
_books = msgspec.json.Decoder(list[BookData])
_trades = msgspec.json.Decoder(list[Trade])
_tickers = msgspec.json.Decoder(list[Ticker])


def checksum(book: L2Book) -> int:
    """OKX's signed CRC32 of the interleaved top 25 bids and asks."""
    bids, asks = book.bids(CHECKSUM_LEVELS), book.asks(CHECKSUM_LEVELS)
    parts: list[str] = []
    for i in range(max(len(bids), len(asks))):
        if i < len(bids):
            parts.append(f"{format_fixed(bids[i][0])}:{format_fixed(bids[i][1])}")
        if i < len(asks):
            parts.append(f"{format_fixed(asks[i][0])}:{format_fixed(asks[i][1])}")
    value = zlib.crc32(":".join(parts).encode())
    return value - (1 << 32) if value >= (1 << 31) else value


def _levels(rows: list[list[str]], field: str) -> list[L2Level]:
    return [L2Level(fx(r[0], field), fx(r[1], field)) for r in rows]


class Okx(Venue):
    name = "okx"
    url = "wss://ws.okx.com:8443/ws/v5/public"
    default_symbols = ("BTC-USDT", "BTC-USD-220527", "UNI-USD-SWAP")
    captures = (("okx/OKX.ws.1.0",),)
    book_marker = b'"action":"update"'
    checksum_field = b'"checksum":'

    def __init__(self, symbols: Sequence[str] = (), label: str | None = None) -> None:
        super().__init__(symbols, label)
        self._seq: dict[str, int] = {}

    def subscribe_messages(self) -> list[str]:
        args = [{"channel": ch, "instId": s} for ch in ("tickers", "trades", "books") for s in self.symbols]
        return [msgspec.json.encode({"op": "subscribe", "args": args}).decode()]

    def parse(self, raw: bytes, ts_recv: int) -> list[Record]:
        """A v5 public frame -> records. Sample (books update)::

            {"arg":{"channel":"books","instId":"BTC-USD-220527"},"action":"update","data":[{"asks":[["30249.4","0",
             "0","0"],["30261","4","0","1"]],"bids":[["30182.6","452","0","1"]],"ts":"1652459225464",
             "checksum":-914047754}]}
        """
        if raw == b"pong":
            return []
        m = _message.decode(raw)
        if m.event:
            if m.event == "error":
                raise self.fail(f"error event {m.code}: {m.msg}")
            return []
        if m.arg is None:
            raise self.fail("neither an event nor channel data")
        channel = m.arg.channel
        if channel == "books":
            return self._books(m.arg.instId, m.action, _books.decode(m.data), ts_recv)
        if channel == "trades":
            return [self._trade(t, ts_recv) for t in _trades.decode(m.data)]
        if channel == "tickers":
            return [self._quote(t, ts_recv) for t in _tickers.decode(m.data)]
        return self.unknown(channel)

    def _trade(self, t: Trade, ts_recv: int) -> TradeTick:
        return TradeTick(
            venue=self.name, symbol=t.instId, ts_event=ms_to_ns(int(t.ts)), ts_recv=ts_recv, price=fx(t.px, "px"),
            size=fx(t.sz, "sz"), side="B" if t.side == "buy" else "A", trade_id=t.tradeId,
        )

    def _quote(self, t: Ticker, ts_recv: int) -> QuoteTick:
        return QuoteTick(
            venue=self.name, symbol=t.instId, ts_event=ms_to_ns(int(t.ts)), ts_recv=ts_recv,
            bid_px=fx(t.bidPx, "bidPx") if t.bidPx else None, bid_sz=fx(t.bidSz, "bidSz") if t.bidSz else 0,
            ask_px=fx(t.askPx, "askPx") if t.askPx else None, ask_sz=fx(t.askSz, "askSz") if t.askSz else 0,
        )

    def _books(self, inst: str, action: str, datas: list[BookData], ts_recv: int) -> list[Record]:
        out: list[Record] = []
        for d in datas:
            out.extend(self._book(inst, action, d, ts_recv))
        return out

    def _book(self, inst: str, action: str, d: BookData, ts_recv: int) -> list[Record]:
        book = self.book(inst)
        if action == "snapshot":
            book.replace(_levels(d.bids, "bids"), _levels(d.asks, "asks"))
        elif not book.synced:
            return []  # waiting for the snapshot that the resync brings
        elif d.prevSeqId >= 0 and self._seq.get(inst, -1) >= 0 and d.prevSeqId != self._seq[inst]:
            return self.gap(inst, f"prevSeqId {d.prevSeqId} != last seqId {self._seq[inst]}")
        else:
            bids, asks = book.apply_text(d.bids, d.asks)
        self._seq[inst] = d.seqId
        got = checksum(book)
        if got != d.checksum:
            return self.bad_checksum(inst, f"crc32 {got} != venue's {d.checksum}")
        self.stats.checksums_ok += 1
        ts_event = ms_to_ns(int(d.ts))
        if action == "snapshot":
            return self.snapshot_update(inst, ts_event, ts_recv, max(d.seqId, 0))
        return self.book_update(inst, ts_event, ts_recv, max(d.seqId, 0), bids, asks)
