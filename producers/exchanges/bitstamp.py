"""Bitstamp WebSocket API v2 (``ws.bitstamp.net``): ``diff_order_book_<pair>`` and ``live_trades_<pair>``.

Integrity rules (Bitstamp's order-book instructions): buffer the diffs, fetch the REST book ``GET
/api/v2/order_book/<pair>``, drop the diffs whose ``microtimestamp`` is not after the snapshot's, apply the rest in
order. The diff channel has no sequence number; ``microtimestamp`` plays that role: it must increase strictly from
one diff to the next, and a diff that goes back in time resets the book and refetches the REST snapshot (counted as
a gap); diffs older than a fresh snapshot are just dropped. Sizes are absolute, 0 removes. Quotes are taken from
the book.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from urllib.parse import urlsplit

import msgspec

from producers.exchanges.base import Record, Resync, Venue, levels
from producers.exchanges.fixed import fx, us_to_ns
from topics.records import TradeTick

BUFFER_MAX = 5_000


class Message(msgspec.Struct, frozen=True):
    """``{"data": {...}, "channel": "diff_order_book_ethusd", "event": "data"}``"""

    event: str  # data | trade | bts:subscription_succeeded | bts:request_reconnect | bts:error
    channel: str = ""  # "<channel>_<pair>"
    data: msgspec.Raw = msgspec.Raw(b"{}")  # decoded by event


class BookDiff(msgspec.Struct, frozen=True):
    """``{"timestamp":"1641343691","microtimestamp":"1641343691244908","bids":[["1.15979","993.0258"]],"asks":[]}``"""

    microtimestamp: str  # µs since the epoch, text: the diff's order
    bids: list[list[str]]  # [price, absolute amount]; 0 removes
    asks: list[list[str]]
    timestamp: str = ""  # seconds since the epoch, text


class Trade(msgspec.Struct, frozen=True):
    """``{"id":216000477,"amount_str":"0.07920000","price_str":"3805.44","type":0,"microtimestamp":"1641..."}``"""

    id: int  # trade id
    amount_str: str  # amount, exact text (``amount`` is a float)
    price_str: str  # price, exact text
    type: int  # 0 buy (aggressor bought), 1 sell
    microtimestamp: str  # µs since the epoch, text


_message = msgspec.json.Decoder(Message)
_diff = msgspec.json.Decoder(BookDiff)
_trade = msgspec.json.Decoder(Trade)


class Bitstamp(Venue):
    name = "bitstamp"
    url = "wss://ws.bitstamp.net"
    rest_url = "https://www.bitstamp.net"
    default_symbols = (
        "sgbeur", "ethusd", "xrpeur", "bateur", "usdteur", "usdtusd", "xlmgbp", "adaeur", "batbtc", "galaeur",
    )
    captures = (("bitstamp/BITSTAMP.ws.1.0", "bitstamp/BITSTAMP.http.0.0"),)
    quotes_from_book = True
    resync_how = "snapshot"
    book_marker = b'"event":"data"'

    def __init__(self, symbols: Sequence[str] = (), label: str | None = None) -> None:
        super().__init__(symbols, label)
        self._buffer: dict[str, deque[tuple[BookDiff, int]]] = {}
        self._first: dict[str, bool] = {}  # no diff applied since the snapshot: older diffs are stale, not gaps

    def subscribe_messages(self) -> list[str]:
        return [
            msgspec.json.encode({"event": "bts:subscribe", "data": {"channel": f"{ch}_{s}"}}).decode()
            for ch in ("diff_order_book", "live_trades") for s in self.symbols
        ]

    def snapshot_path(self, symbol: str) -> str | None:
        return f"/api/v2/order_book/{symbol}"

    def symbol_of_rest(self, url: str) -> str | None:
        return urlsplit(url).path.rstrip("/").rpartition("/")[2] or None

    def reset(self) -> None:
        super().reset()
        self._buffer.clear()
        self._first.clear()

    def parse(self, raw: bytes, ts_recv: int) -> list[Record]:
        """A v2 frame -> records. Sample (order book diff)::

            {"data":{"timestamp":"1641343691","microtimestamp":"1641343691310202","bids":[],"asks":[["1.17438",
             "853.01809477"],["1.17484","0.00000000"]]},"channel":"diff_order_book_adaeur","event":"data"}
        """
        m = _message.decode(raw)
        if m.event == "data" and m.channel.startswith("diff_order_book_"):
            return self._diff(m.channel[16:], _diff.decode(m.data), ts_recv)
        if m.event == "trade":
            return [self._trade(m.channel.rpartition("_")[2], _trade.decode(m.data), ts_recv)]
        if m.event in ("bts:subscription_succeeded", "bts:unsubscription_succeeded", "bts:heartbeat"):
            return []
        if m.event == "bts:request_reconnect":
            self.resyncs.append(Resync("*", "reconnect", "venue asked to reconnect"))
            return []
        if m.event == "bts:error":
            raise self.fail(f"error event: {bytes(m.data)[:200]!r}")
        return self.unknown(m.event)

    def _trade(self, pair: str, t: Trade, ts_recv: int) -> TradeTick:
        return TradeTick(
            venue=self.name, symbol=pair, ts_event=us_to_ns(int(t.microtimestamp)), ts_recv=ts_recv,
            price=fx(t.price_str, "price_str"), size=fx(t.amount_str, "amount_str"),
            side="B" if t.type == 0 else "A", trade_id=str(t.id),
        )

    def _diff(self, pair: str, d: BookDiff, ts_recv: int) -> list[Record]:
        book = self.book(pair)
        if not book.synced:
            buf = self._buffer.get(pair)
            if buf is None:
                buf = self._buffer[pair] = deque(maxlen=BUFFER_MAX)
            buf.append((d, ts_recv))
            return []
        return self._apply(pair, d, ts_recv)

    def _apply(self, pair: str, d: BookDiff, ts_recv: int) -> list[Record]:
        book = self.book(pair)
        micro = int(d.microtimestamp)
        if micro <= book.sequence:
            if self._first.get(pair, False):
                return []  # older than the snapshot: already in it
            return self.gap(pair, f"microtimestamp {micro} not after {book.sequence}")
        self._first[pair] = False
        bids, asks = book.apply_text(d.bids, d.asks)
        book.sequence = micro
        return self.book_update(pair, us_to_ns(micro), ts_recv, micro, bids, asks)

    def on_snapshot(self, symbol: str, body: bytes, ts_recv: int) -> list[Record]:
        try:
            snap = _diff.decode(body)
            bids, asks = levels(snap.bids, "bids"), levels(snap.asks, "asks")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, IndexError) as e:
            self._malformed(f"order book snapshot for {symbol}: {e}", body)
            return self.gap(symbol, "unusable order book snapshot")
        micro = int(snap.microtimestamp)
        book = self.book(symbol)
        book.replace(bids, asks, micro)
        self._first[symbol] = True
        self._last_bbo.pop(symbol, None)
        out = self.snapshot_update(symbol, us_to_ns(micro), ts_recv, micro)
        for d, ts in self._buffer.pop(symbol, ()):
            if book.synced:
                out.extend(self._apply(symbol, d, ts))
        self.count(out)
        return out

    def render_snapshot(self, symbol: str) -> bytes | None:
        """This book as the venue's REST answer (the fake exchange serves it to resyncing clients)."""
        from topics.fixed import format_fixed

        book = self.books.get(symbol)
        if book is None or not book.synced:
            return None
        return msgspec.json.encode({
            "timestamp": str(book.sequence // 1_000_000), "microtimestamp": str(book.sequence),
            "bids": [[format_fixed(p, 2), format_fixed(s, 8)] for p, s in book.bids()],
            "asks": [[format_fixed(p, 2), format_fixed(s, 8)] for p, s in book.asks()],
        })
