"""Binance spot (``binance``) and USD-M futures (``binance_futures``): combined streams.

Integrity rules (Binance, "How to manage a local order book correctly"):

- spot: buffer ``depthUpdate`` events, fetch ``GET /api/v3/depth?symbol=X&limit=1000`` (``lastUpdateId`` L), drop
  events with ``u <= L``; the first applied event must have ``U <= L+1 <= u``; afterwards every event's ``U`` must
  be the previous event's ``u + 1``.
- USD-M futures: fetch ``GET /fapi/v1/depth``; drop events with ``u < L``; the first applied event must have
  ``U <= L <= u``; afterwards every event's ``pu`` must equal the previous event's ``u``.

Any break is a gap: the book is reset, nothing of it is published, and the REST snapshot is fetched again.
Sizes are absolute; size 0 removes the level (removing an unknown level is normal).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import msgspec

from producers.exchanges.base import Record, Venue, levels
from producers.exchanges.fixed import fx, ms_to_ns
from topics.records import QuoteTick, TradeTick

BUFFER_MAX = 5_000  # depth events kept per symbol while waiting for the REST snapshot


class DepthUpdate(msgspec.Struct, frozen=True):
    """``{"e":"depthUpdate","E":1633998512068,"s":"NKNUSDT","U":499869750,"u":499869752,"b":[[..]],"a":[]}``"""

    E: int  # event time, ms
    s: str  # symbol
    U: int  # first update id in the event
    u: int  # final update id in the event
    b: list[list[str]]  # bids [price, absolute quantity]; 0 removes
    a: list[list[str]]  # asks
    pu: int = -1  # futures only: the previous event's final update id
    T: int = 0  # futures only: transaction time, ms


class BookTicker(msgspec.Struct, frozen=True):
    """``{"u":50093239212,"s":"BTCUSDT","b":"61837.63","B":"3.78826","a":"61837.64","A":"1.54698"}``"""

    u: int  # order book update id
    s: str  # symbol
    b: str  # best bid price
    B: str  # best bid quantity
    a: str  # best ask price
    A: str  # best ask quantity
    E: int = 0  # futures only: event time, ms
    T: int = 0  # futures only: transaction time, ms


class Trade(msgspec.Struct, frozen=True):
    """``{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63","q":"0.02","T":...,"m":true}``"""

    s: str  # symbol
    p: str  # price
    q: str  # quantity
    T: int  # trade time, ms
    m: bool  # buyer is the maker (so the aggressor sold)
    t: int = -1  # trade id (trade stream)
    a: int = -1  # aggregate trade id (aggTrade stream)


class DepthSnapshot(msgspec.Struct, frozen=True):
    """REST depth: ``{"lastUpdateId":499869752,"bids":[["0.3521","672.0"],..],"asks":[..]}``"""

    lastUpdateId: int  # the last update id the snapshot includes
    bids: list[list[str]]  # [price, quantity], best first
    asks: list[list[str]]
    E: int = 0  # futures only: message output time, ms
    T: int = 0  # futures only: transaction time, ms


class DepthFrame(msgspec.Struct, frozen=True):
    """A combined-stream frame of a depth channel."""

    stream: str  # "<symbol lower>@depth..."
    data: DepthUpdate


class TickerFrame(msgspec.Struct, frozen=True):
    """A combined-stream frame of the bookTicker channel."""

    stream: str  # "<symbol lower>@bookTicker"
    data: BookTicker


class TradeFrame(msgspec.Struct, frozen=True):
    """A combined-stream frame of the trade or aggTrade channel."""

    stream: str  # "<symbol lower>@trade" or "@aggTrade"
    data: Trade


_depth = msgspec.json.Decoder(DepthFrame)
_ticker = msgspec.json.Decoder(TickerFrame)
_trade = msgspec.json.Decoder(TradeFrame)
_snapshot = msgspec.json.Decoder(DepthSnapshot)


class BinanceSpot(Venue):
    """Binance spot: trade, bookTicker and depth@100ms streams on one combined-stream connection."""

    name = "binance"
    url = "wss://stream.binance.com:9443/stream"
    rest_url = "https://api.binance.com"
    depth_path: ClassVar[str] = "/api/v3/depth"
    default_symbols = ("BTCUSDT", "NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR")
    captures = (
        ("binance/hftbacktest_spot_btcusdt_20240808.gz",),
        ("binance/BINANCE.ws.1.0", "binance/BINANCE.http.0.0"),
    )
    resync_how = "snapshot"
    book_marker = b'"depthUpdate"'
    futures: ClassVar[bool] = False

    def __init__(self, symbols: Sequence[str] = (), label: str | None = None) -> None:
        super().__init__(symbols, label)
        self._buffer: dict[str, deque[tuple[DepthUpdate, int]]] = {}
        self._first: dict[str, bool] = {}

    def subscribe_messages(self) -> list[str]:
        streams = [f"{s.lower()}@{ch}" for s in self.symbols for ch in ("trade", "bookTicker", "depth@100ms")]
        return [msgspec.json.encode({"method": "SUBSCRIBE", "params": streams, "id": 1}).decode()]

    def snapshot_path(self, symbol: str) -> str | None:
        return f"{self.depth_path}?symbol={symbol}&limit=1000"

    def symbol_of_rest(self, url: str) -> str | None:
        values = parse_qs(urlsplit(url).query).get("symbol")
        return values[0] if values else None

    def reset(self) -> None:
        super().reset()
        self._buffer.clear()
        self._first.clear()

    def parse(self, raw: bytes, ts_recv: int) -> list[Record]:
        """A combined-stream frame -> records. Sample (spot trade)::

            {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,
             "p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}
        """
        if raw[:10] != b'{"stream":':
            return self._control(raw)
        at = raw.find(b"@", 11)  # the channel, read off the stream name, picks the one decoder for the frame
        channel = raw[at + 1:raw.find(b'"', at)] if at > 0 else b""
        if channel == b"bookTicker":
            return [self._quote(_ticker.decode(raw).data, ts_recv)]
        if channel == b"trade" or channel == b"aggTrade":
            return [self._trade(_trade.decode(raw).data, ts_recv)]
        if channel.startswith(b"depth"):
            return self._on_depth(_depth.decode(raw).data, ts_recv)
        return self.unknown(channel.partition(b"_")[0].decode("utf-8", "replace"))

    def _control(self, raw: bytes) -> list[Record]:
        msg = msgspec.json.decode(raw)
        if isinstance(msg, dict) and "result" in msg and "id" in msg:
            return self.unknown("subscription-ack")
        if isinstance(msg, dict) and "lastUpdateId" in msg:
            raise self.fail("REST depth snapshot on the socket")
        raise self.fail("not a combined-stream frame")

    def _trade(self, t: Trade, ts_recv: int) -> TradeTick:
        return TradeTick(
            venue=self.name, symbol=t.s, ts_event=ms_to_ns(t.T), ts_recv=ts_recv, price=fx(t.p, "p"),
            size=fx(t.q, "q"), side="A" if t.m else "B", trade_id=str(t.t if t.t >= 0 else t.a),
        )

    def _quote(self, q: BookTicker, ts_recv: int) -> QuoteTick:
        return QuoteTick(
            venue=self.name, symbol=q.s, ts_event=ms_to_ns(q.T or q.E) if (q.T or q.E) else ts_recv,
            ts_recv=ts_recv, bid_px=fx(q.b, "b"), bid_sz=fx(q.B, "B"), ask_px=fx(q.a, "a"), ask_sz=fx(q.A, "A"),
        )

    # --- book sync ------------------------------------------------------------------------------------------
    def _on_depth(self, d: DepthUpdate, ts_recv: int) -> list[Record]:
        book = self.book(d.s)
        if not book.synced:
            buf = self._buffer.get(d.s)
            if buf is None:
                buf = self._buffer[d.s] = deque(maxlen=BUFFER_MAX)
            buf.append((d, ts_recv))
            return []
        return self._apply(d, ts_recv)

    def _apply(self, d: DepthUpdate, ts_recv: int) -> list[Record]:
        book = self.book(d.s)
        last = book.sequence
        if self._first.get(d.s, False):
            if self._stale(d, last):
                return []
            if not self._bridges(d, last):
                return self.gap(d.s, f"first event U={d.U} u={d.u} does not bridge lastUpdateId={last}")
            self._first[d.s] = False
        elif not self._continues(d, last):
            return self.gap(d.s, f"event U={d.U} u={d.u} pu={d.pu} does not follow u={last}")
        bids, asks = book.apply_text(d.b, d.a)
        book.sequence = d.u
        return self.book_update(d.s, ms_to_ns(d.T or d.E), ts_recv, d.u, bids, asks)

    def _stale(self, d: DepthUpdate, last: int) -> bool:
        return d.u <= last

    def _bridges(self, d: DepthUpdate, last: int) -> bool:
        return d.U <= last + 1 <= d.u

    def _continues(self, d: DepthUpdate, last: int) -> bool:
        return last + 1 == d.U

    def on_snapshot(self, symbol: str, body: bytes, ts_recv: int) -> list[Record]:
        try:
            snap = _snapshot.decode(body)
            bids, asks = levels(snap.bids, "bids"), levels(snap.asks, "asks")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, IndexError) as e:
            self._malformed(f"depth snapshot for {symbol}: {e}", body)
            return self.gap(symbol, "unusable depth snapshot")
        book = self.book(symbol)
        book.replace(bids, asks, snap.lastUpdateId)
        self._first[symbol] = True
        ts_event = ms_to_ns(snap.T or snap.E) if (snap.T or snap.E) else ts_recv
        out = self.snapshot_update(symbol, ts_event, ts_recv, snap.lastUpdateId)
        buffered = self._buffer.pop(symbol, ())
        for d, ts in buffered:
            if not book.synced:
                break  # a gap inside the buffer: resync already requested
            out.extend(self._apply(d, ts))
        self.count(out)
        return out

    def render_snapshot(self, symbol: str) -> bytes | None:
        """This book as the venue's REST depth answer (the fake exchange serves it to resyncing clients)."""
        book = self.books.get(symbol)
        if book is None or not book.synced:
            return None
        from topics.fixed import format_fixed

        return msgspec.json.encode({
            "lastUpdateId": book.sequence,
            "bids": [[format_fixed(p), format_fixed(s)] for p, s in book.bids()],
            "asks": [[format_fixed(p), format_fixed(s)] for p, s in book.asks()],
        })

    @classmethod
    def fake_ack(cls, msg: bytes) -> bytes | None:
        """What the venue answers to a client frame (SUBSCRIBE -> ``{"result":null,"id":N}``)."""
        try:
            req = msgspec.json.decode(msg)
        except msgspec.DecodeError:
            return None
        return msgspec.json.encode({"result": None, "id": req.get("id")}) if isinstance(req, dict) else None


class BinanceFutures(BinanceSpot):
    """Binance USD-M futures: same streams; the ``pu`` chain and ``U <= L <= u`` rule."""

    name = "binance_futures"
    url = "wss://fstream.binance.com/stream"
    rest_url = "https://fapi.binance.com"
    depth_path = "/fapi/v1/depth"
    default_symbols = ("BTCUSDT", "SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT")
    captures = (
        ("binance_futures/hftbacktest_usdm_btcusdt_20240808.gz",),
        ("binance_futures/BINANCE_FUTURES.ws.1.0", "binance_futures/BINANCE_FUTURES.http.0.0"),
    )
    futures = True

    def _stale(self, d: DepthUpdate, last: int) -> bool:
        return d.u < last

    def _bridges(self, d: DepthUpdate, last: int) -> bool:
        return d.U <= last <= d.u

    def _continues(self, d: DepthUpdate, last: int) -> bool:
        return d.pu == last
