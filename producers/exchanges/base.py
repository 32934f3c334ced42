"""The venue-agnostic part of a connector: the :class:`Venue` base, its counters and resync requests.

A venue module subclasses :class:`Venue` and implements :meth:`Venue.parse` (raw frame -> records) plus its
subscription messages and its book integrity rules. The connection loop (:mod:`producers.exchanges.connection`)
only talks to this interface, so it is the same for every venue.

Errors never escape :meth:`Venue.handle`: unknown message types are counted and skipped, malformed frames are
counted and logged (rate-limited) with the venue and the reason.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import msgspec

from producers.exchanges.book import L2Book
from producers.exchanges.errors import FrameError
from producers.exchanges.fixed import fx
from topics.logs import RateLimitedLog
from topics.records import L2Level, L2Update, QuoteTick, TradeTick

logger = logging.getLogger(__name__)
_ratelimited = RateLimitedLog(logger, interval_s=5.0)

Record = TradeTick | QuoteTick | L2Update
INT64_MAX = 9_223_372_036_854_775_807  # the records' price range (1e-9 fixed point)
ResyncHow = Literal["snapshot", "reconnect"]


@dataclass(frozen=True)
class Resync:
    """A request to the connection loop: refetch a REST snapshot for ``symbol``, or reconnect."""

    symbol: str
    how: ResyncHow
    reason: str


@dataclass
class VenueStats:
    """Plain counters (read by the metrics collector at scrape time; cheap on the hot path)."""

    messages: int = 0
    trades: int = 0
    quotes: int = 0
    book_updates: int = 0
    unknown: int = 0
    malformed: int = 0
    gaps: int = 0
    checksum_failures: int = 0
    checksums_ok: int = 0
    resyncs: int = 0
    snapshots: int = 0
    unrepresentable: int = 0  # book levels beyond the records' price range, kept locally, not published
    out_of_order: int = 0  # sequenced messages older than the last one seen (skipped)
    reconnects: int = 0
    queue_drops: int = 0
    published: int = 0
    unknown_types: dict[str, int] = field(default_factory=dict)
    last_reason: str = ""

    @property
    def ticks(self) -> int:
        return self.trades + self.quotes + self.book_updates


class Venue(ABC):
    """One exchange's wire format, subscriptions and book integrity rules."""

    name: str  # the venue's name; an instance may carry its own (a second connection: "binance#2")
    url: ClassVar[str]  # the venue's public WebSocket endpoint (never contacted by tests)
    rest_url: ClassVar[str] = ""  # REST base for depth snapshots, when the venue needs one
    default_symbols: ClassVar[tuple[str, ...]] = ()
    captures: ClassVar[tuple[tuple[str, ...], ...]] = ()  # groups of capture files, each replayed as one session
    quotes_from_book: ClassVar[bool] = False  # derive QuoteTicks from the book (venues without a BBO channel)
    resync_how: ClassVar[ResyncHow] = "reconnect"
    book_marker: ClassVar[bytes] = b""  # bytes found in a sequenced book update frame (the fake's "gap")
    checksum_field: ClassVar[bytes] = b""  # JSON key prefix of the checksum (the fake's "bad-checksum")

    def __init__(self, symbols: Sequence[str] = (), label: str | None = None) -> None:
        if label:
            self.name = label
        self.symbols: tuple[str, ...] = tuple(symbols) or self.default_symbols
        self.stats = VenueStats()
        self.books: dict[str, L2Book] = {}
        self.resyncs: list[Resync] = []
        self._last_bbo: dict[str, tuple[int, int, int, int] | None] = {}

    # --- to implement -------------------------------------------------------------------------------------
    @abstractmethod
    def subscribe_messages(self) -> list[str]:
        """The text frames to send right after connecting."""

    @abstractmethod
    def parse(self, raw: bytes, ts_recv: int) -> list[Record]:
        """Records from one received frame; may raise ``FrameError``/``msgspec`` errors/``ValueError``."""

    def snapshot_path(self, symbol: str) -> str | None:
        """Path+query of the REST depth snapshot for ``symbol`` (venues with ``resync_how == "snapshot"``)."""
        return None

    def symbol_of_rest(self, url: str) -> str | None:
        """The symbol a recorded REST URL is for."""
        return None

    def on_snapshot(self, symbol: str, body: bytes, ts_recv: int) -> list[Record]:
        """Apply a REST depth snapshot; returns what became publishable."""
        return []

    # --- shared behaviour ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """A new connection: every book must be rebuilt from a fresh snapshot."""
        for book in self.books.values():
            book.clear()
        self._last_bbo.clear()
        self.resyncs = [Resync(s, "snapshot", "connect") for s in self.symbols] if self.resync_how == "snapshot" else []

    def handle(self, raw: bytes, ts_recv: int) -> list[Record]:
        """Records from one frame; never raises. Counts messages, ticks, malformed frames."""
        self.stats.messages += 1
        try:
            out = self.parse(raw, ts_recv)
        except FrameError as e:
            return self._malformed(e.reason, raw)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, KeyError, IndexError, TypeError) as e:
            return self._malformed(f"{type(e).__name__}: {e}", raw)
        self.count(out)
        return out

    def count(self, records: list[Record]) -> None:
        st = self.stats
        for r in records:
            if type(r) is TradeTick:
                st.trades += 1
            elif type(r) is QuoteTick:
                st.quotes += 1
            else:
                st.book_updates += 1

    def _malformed(self, reason: str, raw: bytes) -> list[Record]:
        self.stats.malformed += 1
        self.stats.last_reason = reason
        _ratelimited.warning(
            f"{self.name}:malformed", time.monotonic(), "malformed frame from %s: %s (frame starts %r)",
            self.name, reason, bytes(raw[:80]),
        )
        return []

    def unknown(self, kind: str) -> list[Record]:
        """Count and skip a message type this connector does not use."""
        self.stats.unknown += 1
        self.stats.unknown_types[kind] = self.stats.unknown_types.get(kind, 0) + 1
        return []

    def fail(self, reason: str) -> FrameError:
        return FrameError(self.name, reason)

    def book(self, symbol: str) -> L2Book:
        b = self.books.get(symbol)
        if b is None:
            b = self.books[symbol] = L2Book()
        return b

    def gap(self, symbol: str, reason: str) -> list[Record]:
        """A sequence gap: the book is reset (never published as good), counted, and a resync requested."""
        self.stats.gaps += 1
        return self._resync(symbol, reason)

    def bad_checksum(self, symbol: str, reason: str) -> list[Record]:
        self.stats.checksum_failures += 1
        return self._resync(symbol, reason)

    def _resync(self, symbol: str, reason: str) -> list[Record]:
        self.stats.resyncs += 1
        self.stats.last_reason = f"{symbol}: {reason}"
        self.book(symbol).clear()
        self._last_bbo.pop(symbol, None)
        if not any(r.symbol == symbol for r in self.resyncs):
            self.resyncs.append(Resync(symbol, self.resync_how, reason))
        logger.warning("%s %s: book reset, resync by %s: %s", self.name, symbol, self.resync_how, reason)
        return []

    def take_resyncs(self) -> list[Resync]:
        out, self.resyncs = self.resyncs, []
        return out

    def book_update(
        self, symbol: str, ts_event: int, ts_recv: int, sequence: int, bids: list[L2Level], asks: list[L2Level],
        snapshot: bool = False,
    ) -> list[Record]:
        """The L2Update for levels just accepted, plus a derived QuoteTick when the venue wants one.

        Levels priced beyond the record's Int64 range (venues' placeholder orders at 9999999999) stay in the
        local book, exact, but cannot be published: they are left out and counted (``unrepresentable``).
        """
        if any(lv.price > INT64_MAX for lv in bids) or any(lv.price > INT64_MAX for lv in asks):
            bids, asks = self._representable(bids), self._representable(asks)
        upd = L2Update(
            venue=self.name, symbol=symbol, ts_event=ts_event, ts_recv=ts_recv, sequence=sequence,
            snapshot=snapshot, bids=bids, asks=asks,
        )
        if not self.quotes_from_book:
            return [upd]
        quote = self.quote_from_book(symbol, ts_event, ts_recv)
        return [upd, quote] if quote is not None else [upd]

    def _representable(self, levels: list[L2Level]) -> list[L2Level]:
        kept = [lv for lv in levels if lv.price <= INT64_MAX]
        self.stats.unrepresentable += len(levels) - len(kept)
        return kept

    def quote_from_book(self, symbol: str, ts_event: int, ts_recv: int) -> QuoteTick | None:
        """A QuoteTick when the book's best bid/ask changed since the last one published."""
        book = self.book(symbol)
        bid, ask = book.best_bid(), book.best_ask()
        key = (bid or (0, 0)) + (ask or (0, 0))
        if self._last_bbo.get(symbol) == key:
            return None
        self._last_bbo[symbol] = key
        return QuoteTick(
            venue=self.name, symbol=symbol, ts_event=ts_event, ts_recv=ts_recv,
            bid_px=bid[0] if bid else None, bid_sz=bid[1] if bid else 0,
            ask_px=ask[0] if ask else None, ask_sz=ask[1] if ask else 0,
        )

    def snapshot_update(self, symbol: str, ts_event: int, ts_recv: int, sequence: int) -> list[Record]:
        """The whole (just synced) book as one snapshot L2Update."""
        bids, asks = self.book(symbol).levels()
        self.stats.snapshots += 1
        return self.book_update(symbol, ts_event, ts_recv, sequence, bids, asks, snapshot=True)


def levels(pairs: list[list[str]], field: str) -> list[L2Level]:
    """``[["price", "size"], ...]`` decimal text -> exact levels."""
    return [L2Level(fx(p[0], field), fx(p[1], field)) for p in pairs]
