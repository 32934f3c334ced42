"""Frame in, outputs out: one instrument's book and what it last published. Pure logic, no Kafka, no clock reads.

A :class:`TrackedBook` applies a frame in one call (``Book.apply_frame``: the compiled engine loops in C) and
publishes the BBO at every consistency point (a record applied with F_LAST) where it changed. Then, per frame, it
counts crossed points (reporting a book becoming crossed and uncrossed), drains the book's trades, turns counter
increases (unknown orders, bad records, replayed records, F_MAYBE_BAD_BOOK, sequence gaps) into anomalies, and
marks its MBP-10 due. Outputs
are ``(topic, key, value)`` with the key the instrument_id as decimal text and the value JSON, carrying the source
``sequence`` and ``ts_recv`` so that downstream can drop repeats.

What it published (:class:`PublishState`) travels in the checkpoint with the book, so that a book restored from a
checkpoint and fed the same frames publishes exactly what the uninterrupted book published.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import msgspec

from processors.book import Book
from topics import catalog
from topics.codec import encode
from topics.fixed import format_fixed
from topics.records import (
    F_LAST,
    F_MAYBE_BAD_BOOK,
    BboUpdate,
    BookAnomaly,
    BookTrade,
    Level,
    MboFrame,
    Mbp10Snapshot,
)

Output = tuple[str, bytes, bytes]  # topic, key, value
MBP_DEPTH = 10
# book counters that become anomalies when they grow: BookStats field -> anomaly kind
COUNTER_KINDS = (
    ("unknown_cancels", "unknown_cancel"),
    ("unknown_modifies", "unknown_modify"),
    ("bad_records", "bad_record"),
    ("duplicates_skipped", "duplicate"),
)


@dataclass(frozen=True)
class OutputTopics:
    """Where a worker reads frames and writes what it derives from them (the catalog's names by default)."""

    frames: str = catalog.MBO_FRAMES.name
    bbo: str = catalog.BOOK_BBO.name
    mbp10: str = catalog.BOOK_MBP10.name
    trades: str = catalog.BOOK_TRADES.name
    anomalies: str = catalog.BOOK_ANOMALIES.name
    deadletter: str = catalog.DEAD_LETTER.name

    @classmethod
    def with_prefix(cls, prefix: str) -> OutputTopics:
        """Every topic name prefixed (tests and benchmarks run isolated pipelines on one broker)."""
        base = cls()
        return cls(*(prefix + getattr(base, name) for name in cls.__dataclass_fields__))

    def framed(self) -> frozenset[str]:
        """The output topics whose messages are frames of records (``framed`` in the catalog)."""
        base = type(self)()  # each field's catalog name, whatever prefix this one has
        return frozenset(getattr(self, name) for name in self.__dataclass_fields__
                         if catalog.topic(getattr(base, name)).framed)


class PublishState(msgspec.Struct, kw_only=True):
    """What one book published and where it stands; saved in its checkpoint."""

    bid: Level | None = None  # last BBO published
    ask: Level | None = None
    crossed: bool = False  # the last consistency point was crossed (as received)
    crossed_points: int = 0  # consistency points in the current crossed episode
    sequence: int = 0  # last consistency point: sequence, ts_recv, ts_event
    ts_recv: int = 0
    ts_event: int = 0
    at_point: bool = False  # the last frame ended with F_LAST: the book is consistent now
    last_seq: dict[int, int] = {}  # channel -> last sequence seen (gap detection)
    frames: int = 0  # frames applied
    offset: int = -1  # Kafka offset of the last frame applied


class TrackedBook:
    """A :class:`Book` with its publishing state; :meth:`apply_frame` turns frames into outputs."""

    __slots__ = ("book", "counters", "gap_threshold", "key", "last_duplicate", "mbp10_pending", "mbp10_sent",
                 "state", "tally", "topics", "updated_ns")

    def __init__(self, book: Book, topics: OutputTopics, gap_threshold: int = 0,
                 state: PublishState | None = None, tally: Counter[str] | None = None) -> None:
        self.book = book
        self.tally = tally if tally is not None else Counter()  # anomalies by kind
        self.topics = topics
        self.gap_threshold = gap_threshold
        self.state = state if state is not None else PublishState()
        self.key = str(book.instrument_id).encode()
        self.counters = _counters(book)
        self.mbp10_pending = state is not None  # a restored book publishes a fresh snapshot
        self.mbp10_sent = float("-inf")  # monotonic seconds of the last MBP-10 sent
        self.last_duplicate = False  # the last frame applied may have been published before
        self.updated_ns = 0  # wall clock of the last frame applied, for display

    def apply_frame(self, frame: MboFrame, offset: int, duplicate: bool, out: list[Output]) -> None:
        """Apply every record of ``frame`` (Kafka ``offset``) and append what it publishes to ``out``."""
        state = self.state
        points = self._apply_records(frame, duplicate, out)
        for trade in self.book.take_trades():
            out.append((self.topics.trades, self.key, encode(_marked(trade, duplicate))))
        self._counter_anomalies(frame, duplicate, out)
        if self.gap_threshold:
            self._gap_anomalies(frame, duplicate, out)
        state.at_point = bool(frame.flags[-1] & F_LAST)
        state.frames += 1
        state.offset = offset
        self.last_duplicate = duplicate
        if points:
            self.mbp10_pending = True

    def _apply_records(self, frame: MboFrame, duplicate: bool, out: list[Output]) -> int:
        """Apply the frame in one call (the compiled engine loops in C); publish the BBO changes it reports."""
        book, state, key, topic = self.book, self.state, self.key, self.topics.bbo
        crossings = book.stats.crossings
        changes: list[tuple[int, Level | None, Level | None]] = []
        points = book.apply_frame(frame, None, changes)
        if not points:
            return 0
        seqs, recvs, events = frame.sequence, frame.ts_recv, frame.ts_event
        bid, ask = state.bid, state.ask
        for i, new_bid, new_ask in changes:
            if new_bid != bid or new_ask != ask:
                bid, ask = new_bid, new_ask
                out.append((topic, key, self._bbo(bid, ask, seqs[i], recvs[i], events[i], duplicate)))
        state.bid, state.ask = bid, ask
        last = points[-1]
        state.sequence, state.ts_recv, state.ts_event = seqs[last], recvs[last], events[last]
        crossed = book.stats.crossings - crossings
        if crossed or state.crossed:
            self._crossings(crossed, changes, frame, duplicate, out)
        return len(points)

    def _bbo(self, bid: Level | None, ask: Level | None, seq: int, ts_recv: int, ts_event: int,
             duplicate: bool) -> bytes:
        book = self.book
        return encode(BboUpdate(
            publisher_id=book.publisher_id, instrument_id=book.instrument_id, ts_event=ts_event, ts_recv=ts_recv,
            sequence=seq,
            bid_px=None if bid is None else bid.price, bid_sz=0 if bid is None else bid.size,
            bid_ct=0 if bid is None else bid.count,
            ask_px=None if ask is None else ask.price, ask_sz=0 if ask is None else ask.size,
            ask_ct=0 if ask is None else ask.count,
            crossed=bid is not None and ask is not None and bid.price >= ask.price, duplicate=duplicate,
        ))

    def _crossings(self, crossed: int, changes: list[tuple[int, Level | None, Level | None]], frame: MboFrame,
                   duplicate: bool, out: list[Output]) -> None:
        """Count the frame's crossed consistency points; report a book becoming crossed (``crossed``) and no
        longer being crossed at the frame's last point (``uncrossed``, with the episode's count)."""
        state, stats = self.state, self.book.stats
        where = (state.sequence, state.ts_recv, state.ts_event)
        if crossed:
            state.crossed_points += crossed
            self.tally["crossed"] += crossed
            if not state.crossed:
                state.crossed = True
                first = next(((b, a) for _, b, a in changes if b and a and b.price >= a.price), self.book.bbo())
                detail = (f"best bid {_px(first[0])} >= best ask {_px(first[1])}; {crossed} crossed consistency "
                          f"points in this frame (policy {self.book.crossed_policy})")
                self._anomaly("crossed", detail, crossed, *where, duplicate, out, tally=False)
        if state.crossed and not stats.crossed_now:
            detail = f"uncrossed after {state.crossed_points} crossed consistency points"
            self._anomaly("uncrossed", detail, state.crossed_points, *where, duplicate, out, tally=False)
            self.tally["uncrossed"] += 1
            state.crossed, state.crossed_points = False, 0

    def _counter_anomalies(self, frame: MboFrame, duplicate: bool, out: list[Output]) -> None:
        now = _counters(self.book)
        last = len(frame.action) - 1
        where = (frame.sequence[last], frame.ts_recv[last], frame.ts_event[last])
        if now != self.counters:
            for (field, kind), before, after in zip(COUNTER_KINDS, self.counters, now, strict=True):
                if after > before:
                    self._anomaly(kind, f"{after - before} {field.replace('_', ' ')} in this frame "
                                  f"({after} so far)", after - before, *where, duplicate, out)
            self.counters = now
        bad = sum(1 for flags in frame.flags if flags & F_MAYBE_BAD_BOOK)
        if bad:
            self._anomaly("maybe_bad_book", f"{bad} records flagged F_MAYBE_BAD_BOOK (venue detected a gap)",
                          bad, *where, duplicate, out)

    def _gap_anomalies(self, frame: MboFrame, duplicate: bool, out: list[Output]) -> None:
        last_seq, threshold = self.state.last_seq, self.gap_threshold
        for chan, seq, ts_recv, ts_event in zip(frame.channel_id, frame.sequence, frame.ts_recv, frame.ts_event,
                                                strict=True):
            prev = last_seq.get(chan)
            if prev is not None and seq - prev > threshold:
                self._anomaly("gap", f"channel {chan}: sequence jumped from {prev} to {seq}", seq - prev - 1,
                              seq, ts_recv, ts_event, duplicate, out)
            if prev is None or seq > prev:
                last_seq[chan] = seq

    def _anomaly(self, kind: str, detail: str, count: int, seq: int, ts_recv: int, ts_event: int,
                 duplicate: bool, out: list[Output], tally: bool = True) -> None:
        book = self.book
        if tally:
            self.tally[kind] += count
        record = BookAnomaly(publisher_id=book.publisher_id, instrument_id=book.instrument_id, ts_event=ts_event,
                             ts_recv=ts_recv, sequence=seq, kind=kind, detail=detail, count=count,  # type: ignore[arg-type]
                             duplicate=duplicate)
        out.append((self.topics.anomalies, self.key, encode(record)))

    def mbp10(self) -> Output:
        """The book's ten best levels per side now, as of its last consistency point."""
        book, state = self.book, self.state
        bids, asks = book.levels("B", MBP_DEPTH), book.levels("A", MBP_DEPTH)
        record = Mbp10Snapshot(
            publisher_id=book.publisher_id, instrument_id=book.instrument_id, ts_event=state.ts_event,
            ts_recv=state.ts_recv, sequence=state.sequence, bids=bids, asks=asks,
            crossed=bool(bids and asks and bids[0].price >= asks[0].price), duplicate=self.last_duplicate,
        )
        return (self.topics.mbp10, self.key, encode(record))

    def mbp10_due(self, now: float, interval: float) -> bool:
        """An MBP-10 should go out now: the book changed, is consistent, and the last one is ``interval`` old."""
        return self.mbp10_pending and self.state.at_point and now - self.mbp10_sent >= interval

    def take_mbp10(self, now: float) -> Output:
        """The MBP-10 to send now; the book is no longer due until it changes again."""
        self.mbp10_pending = False
        self.mbp10_sent = now
        return self.mbp10()


def _counters(book: Book) -> tuple[int, ...]:
    stats = book.stats
    return tuple(getattr(stats, field) for field, _ in COUNTER_KINDS)


def _marked(trade: BookTrade, duplicate: bool) -> BookTrade:
    return msgspec.structs.replace(trade, duplicate=True) if duplicate else trade


def _px(level: Level | None) -> str:
    return "none" if level is None else format_fixed(level.price)
