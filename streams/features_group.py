"""Feature bars of one partition group: records in, bars and regime signals out. Pure: no Kafka, no clock reads.

A *partition group* is partition ``p`` of every input topic (``book.bbo``, ``book.mbp10``, ``book.trades``,
``ticks.trades``, ``ticks.quotes``); Faust assigns them together (co-partitioned), so one group has one
:class:`~processors.features.FeatureEngine` and one :class:`~processors.regime.RegimeDetector` per bar interval.
Each input topic's partition is a *stream*.

The bar-closing rule (docs/features-worker.md explains why it makes recovery exact):

1. a record's event time is ``max(ts_recv, event time of the previous record of its stream)``;
2. the group clock is the smallest event time of the streams that are not caught up (a stream is caught up when
   the next offset to read is at the broker's end offset); a stream that is not caught up and has no event time
   yet holds the clock back; when every stream is caught up, the clock is the largest event time seen;
3. every bar ending at or before the group clock closes; a record goes into the bar of its event time;
4. instruments seen for the first time are registered when their first bar closes, in name order;
5. a record whose bar already closed (only possible on live input) goes into the open bar and is counted late.

A closed bar's regime signals go out with the record that closed it; the rest of its features wait
(:meth:`GroupKeeper.finish`) until no group of the worker is behind it, so that no group's signals queue behind
another group's features (:meth:`GroupKeeper.finishing`); a checkpoint takes them first.

With complete input (recorded topics), only the per-stream order decides the bars, and Kafka keeps that order,
so a group restored from its checkpoint and fed the rest publishes exactly what an uninterrupted run publishes.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import msgspec

from processors.features import BarSeries, FeatureConfig, FeatureEngine, FeatureFrame, Record, instrument_key
from processors.regime import RegimeConfig, RegimeDetector, RegimeUpdate
from topics import catalog
from topics.codec import decode, decode_message, encode
from topics.errors import DecodeError
from topics.records import BboUpdate, BookTrade, DeadLetter, Mbp10Snapshot, QuoteTick, TradeTick

logger = logging.getLogger(__name__)

Output = tuple[str, bytes, bytes]  # topic, key, value
STAGE = "feature-agent"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class FeatureTopics:
    """What the features worker reads and writes (the catalog's names, optionally prefixed)."""

    bbo: str = catalog.BOOK_BBO.name
    mbp10: str = catalog.BOOK_MBP10.name
    book_trades: str = catalog.BOOK_TRADES.name
    tick_trades: str = catalog.TICKS_TRADES.name
    tick_quotes: str = catalog.TICKS_QUOTES.name
    bars: str = catalog.FEATURES_BARS.name
    signals: str = catalog.SIGNALS_REGIME.name
    deadletter: str = catalog.DEAD_LETTER.name

    @classmethod
    def with_prefix(cls, prefix: str) -> FeatureTopics:
        base = cls()
        return cls(*(prefix + getattr(base, name) for name in cls.__dataclass_fields__))

    def inputs(self) -> dict[str, type]:
        """Input topic -> record type, in a fixed order."""
        return {self.bbo: BboUpdate, self.mbp10: Mbp10Snapshot, self.book_trades: BookTrade,
                self.tick_trades: TradeTick, self.tick_quotes: QuoteTick}

    def compacted(self) -> set[str]:
        """The inputs whose logs are compacted: their offsets may skip (the records a later one replaced)."""
        return {topic for topic, kind in self.inputs().items() if kind.__name__ in catalog.COMPACTED_TYPES}

    def framed(self) -> set[str]:
        """The inputs whose messages may be frames of records (their topics are ``framed`` in the catalog)."""
        return {topic for topic, kind in self.inputs().items() if kind.__name__ in catalog.FRAMED_TYPES}


def _behind_in(topic: str, caught_up: Callable[[str], bool], other: str) -> bool:
    """``caught_up`` while ``topic`` has records left in the frame being taken."""
    return other != topic and caught_up(other)


class GroupCheckpoint(msgspec.Struct, kw_only=True):
    """One group's whole state, written at commit boundaries into the checkpoint table (msgpack, then zlib)."""

    version: int = CHECKPOINT_VERSION
    group: int
    positions: dict[str, int]  # topic -> next offset to handle: records before it are in this state
    clocks: dict[str, int]  # topic -> event time of the stream
    open_end: int  # end of the open bar of the shortest interval, ns (0: no bar opened yet)
    engine: bytes
    detectors: list[bytes]  # one per interval, in the engine's interval order
    pending: list[tuple[str, int, int, bytes]]  # records not fed yet: topic, offset, event time, value


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(GroupCheckpoint)
COMPRESSION_LEVEL = 1  # zlib: the engine's arrays shrink about 3.5 times in a few ms


def compress_checkpoint(snapshot: bytes) -> bytes:
    """A :meth:`Group.snapshot` as :meth:`Group.restore` takes it."""
    return zlib.compress(snapshot, COMPRESSION_LEVEL)


@dataclass
class Pending:
    topic: str
    offset: int
    ts: int  # event time
    record: Record
    key: str = field(init=False)  # its instrument, looked up at every bar close

    def __post_init__(self) -> None:
        self.key = instrument_key(self.record)


@dataclass
class Tally:
    records: int = 0
    skipped: int = 0
    late: int = 0
    gaps: int = 0  # offsets an input stream went on past without their records being handled
    dead_letters: int = 0
    bars_closed: int = 0
    regime_changes: int = 0
    outputs: Counter[str] = field(default_factory=Counter)


class Group:
    """The engine, detectors and stream clocks of one partition group."""

    def __init__(self, number: int, features: FeatureConfig, regime: RegimeConfig) -> None:
        self.number = number
        self.engine = FeatureEngine(features)
        self.detectors = [RegimeDetector(regime) for _ in features.intervals_ns]
        self.base = features.intervals_ns[0]
        self.positions: dict[str, int] = {}
        self.clocks: dict[str, int] = {}
        self.open_end = 0
        self.pending: list[Pending] = []
        self.checkpointed: dict[str, int] = {}  # positions covered by the last durable checkpoint
        self.snapshot_end = 0  # open_end when the last checkpoint was taken (timer bars move it without records)
        self.latest: dict[int, FeatureFrame] = {}  # interval -> last closed frame (web views)
        self.regimes: dict[int, RegimeUpdate] = {}
        self.closed_at: int | None = None  # when the oldest bar whose features are not out yet closed (wall, ns)

    def checkpoint(self) -> bytes:
        """The group's whole state, as :meth:`restore` takes it."""
        return compress_checkpoint(self.snapshot())

    def snapshot(self) -> bytes:
        """The state, not compressed yet (:func:`compress_checkpoint` may run in another thread: zlib releases
        the GIL, and it is most of a checkpoint's cost). Refused while closed bars wait for
        :meth:`GroupKeeper.finish` (their features would be in no checkpoint and no output)."""
        entry = GroupCheckpoint(
            group=self.number, positions=dict(self.positions), clocks=dict(self.clocks), open_end=self.open_end,
            engine=self.engine.checkpoint(), detectors=[d.checkpoint() for d in self.detectors],
            pending=[(p.topic, p.offset, p.ts, encode(p.record)) for p in self.pending])
        return _encoder.encode(entry)

    @classmethod
    def restore(cls, number: int, blob: bytes, types: dict[str, type]) -> Group:
        """The group a :meth:`checkpoint` was taken from; its configuration comes from the checkpoint."""
        try:
            entry = _decoder.decode(zlib.decompress(blob))
        except (zlib.error, msgspec.DecodeError) as e:
            raise ValueError(f"unreadable checkpoint of group {number}: {e}") from e
        if entry.version != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint of group {number} is version {entry.version}, not {CHECKPOINT_VERSION}")
        engine = FeatureEngine.restore(entry.engine)
        group = cls.__new__(cls)
        group.number, group.engine, group.base = number, engine, engine.config.intervals_ns[0]
        group.detectors = [RegimeDetector.restore(d) for d in entry.detectors]
        group.positions, group.clocks, group.open_end = entry.positions, entry.clocks, entry.open_end
        group.pending = [Pending(t, o, ts, decode(types[t], v)) for t, o, ts, v in entry.pending]
        group.checkpointed = {}  # the blob may be a local write the changelog never got: nothing is durable yet
        group.snapshot_end = entry.open_end
        group.latest, group.regimes, group.closed_at = {}, {}, None
        return group


class GroupKeeper:
    """Every assigned group of one worker: handles records, closes bars, plans checkpoints."""

    def __init__(self, topics: FeatureTopics, features: FeatureConfig, regime: RegimeConfig) -> None:
        self.topics = topics
        self.types = topics.inputs()
        framed = topics.framed()
        self.decoders: dict[str, Callable[[bytes], list[Any]]] = {
            topic: partial(decode_message, t, framed=topic in framed) for topic, t in self.types.items()}
        self.compacted = topics.compacted()
        self.features = features
        self.regime = regime
        self.groups: dict[int, Group] = {}
        self.tally = Tally()
        self.last_recv = 0  # ts_recv of the last record handled (the tick-to-signal latency's start)

    # ------------------------------------------------------------------ assignment
    def assign(self, number: int, blob: bytes | None) -> Group:
        group = (Group(number, self.features, self.regime) if blob is None
                 else Group.restore(number, blob, self.types))
        self.groups[number] = group
        return group

    def revoke(self, number: int) -> None:
        self.groups.pop(number, None)

    # ------------------------------------------------------------------ records
    def handle(self, number: int, topic: str, offset: int, key: bytes | None, value: bytes | None,
               caught_up: Callable[[str], bool], now_ns: int) -> list[Output]:
        """Take the message at ``offset`` of ``topic`` in group ``number`` (one record, or a frame of records of
        a tick topic); the outputs it releases, in order."""
        group = self.groups[number]
        expected = group.positions.get(topic)
        if expected is not None and offset != expected:
            if offset < expected:
                self.tally.skipped += 1  # the checkpoint already holds it
                return []
            if topic not in self.compacted:
                self._gap(topic, number, expected, offset)
        group.positions[topic] = offset + 1
        out: list[Output] = []
        try:
            records = self.decoders[topic](value if value is not None else b"")
        except DecodeError as e:
            reason = "no value (null message)" if value is None else str(e)
            out.append(self.dead_letter(topic, number, offset, key, value or b"", reason, now_ns))
            return self.count(out + self.pump(group, caught_up, now_ns))
        if len(records) > 1:  # the frame's later records are still to come: its stream is not caught up yet
            within = partial(_behind_in, topic, caught_up)
            for record in records[:-1]:
                self._take(group, topic, offset, record, within, out, now_ns)
        if records:
            self._take(group, topic, offset, records[-1], caught_up, out, now_ns)
        return self.count(out)

    def _gap(self, topic: str, number: int, expected: int, offset: int) -> None:
        """Records ``expected`` to ``offset - 1`` of a stream were never handled: the log lost them (retention,
        compaction) or they were not delivered. Bars from here on may differ from a run that had them."""
        self.tally.gaps += offset - expected
        logger.warning("records %d to %d of %s partition %d were never handled: the stream went on at %d",
                       expected, offset - 1, topic, number, offset,
                       extra={"topic": topic, "partition": number, "offset": offset})

    def _take(self, group: Group, topic: str, offset: int, record: Any, caught_up: Callable[[str], bool],
              out: list[Output], now_ns: int) -> None:
        """One record: into the open bar when it belongs there and no bar can close, else pending, then close
        what the group clock has passed."""
        self.tally.records += 1
        self.last_recv = record.ts_recv
        ts = max(record.ts_recv, group.clocks.get(topic, 0))
        group.clocks[topic] = ts
        item = Pending(topic, offset, ts, record)
        if group.open_end and ts < group.open_end and item.key in group.engine.slots:
            if ts < group.open_end - group.base:
                self.tally.late += 1
            self._feed(group, item, out, now_ns)
            if not caught_up(topic):  # the clock is at most ts: no bar can close (the common case, cheap)
                return
            if max(group.clocks.values()) < group.open_end:  # the group clock is at most that: nothing closes
                return
        else:
            group.pending.append(item)
        out += self.pump(group, caught_up, now_ns)

    def count(self, out: list[Output]) -> list[Output]:
        if out:
            self.tally.outputs.update(t for t, _, _ in out)
        return out

    def clock(self, group: Group, caught_up: Callable[[str], bool]) -> int | None:
        """The group clock (rule 2 of the module docstring), None while a stream with data holds it back."""
        behind = []
        for topic in self.types:
            if caught_up(topic):
                continue
            ts = group.clocks.get(topic)
            if ts is None:
                return None
            behind.append(ts)
        if behind:
            return min(behind)
        return max(group.clocks.values(), default=None)

    def pump(self, group: Group, caught_up: Callable[[str], bool], now_ns: int = 0,
             clock: int | None = None) -> list[Output]:
        """Close every bar the group clock (or ``clock``, from the idle timer) has passed."""
        if clock is None:
            clock = self.clock(group, caught_up)
        if clock is None:
            return []
        out: list[Output] = []
        opened = not group.open_end
        if opened:
            if not group.pending:
                return out
            first = min(p.ts for p in group.pending)
            group.engine.advance_to(first)
            group.open_end = (first // group.base + 1) * group.base
        base = group.base
        while group.open_end <= clock:
            opened = True
            self._feed_due(group, out, now_ns)
            upto = clock
            if group.pending:
                upto = min(upto, min(p.ts for p in group.pending))
            upto = max(group.open_end, upto // base * base)
            self._signal(group, group.engine.close_to(upto), out, now_ns)
            group.open_end = upto + base
        if opened:
            self._feed_due(group, out, now_ns, known_only=True)
        return out

    def _feed_due(self, group: Group, out: list[Output], now_ns: int, known_only: bool = False) -> None:
        """Feed the pending records of the open bar in arrival order, registering new instruments first (in
        name order) unless ``known_only``."""
        end, slots = group.open_end, group.engine.slots
        due: list[Pending] = []
        rest: list[Pending] = []
        for p in group.pending:  # one pass: the pending list holds every record past the open bar
            (due if p.ts < end and (not known_only or p.key in slots) else rest).append(p)
        if not due:
            return
        if not known_only:
            for name in sorted({p.key for p in due} - slots.keys()):
                group.engine.slot(name)
        group.pending = rest
        for item in due:
            self._feed(group, item, out, now_ns)

    def _feed(self, group: Group, item: Pending, out: list[Output], now_ns: int) -> None:
        try:
            group.engine.feed(item.record)
        except Exception as e:  # a record the engine cannot take: keep going, keep the evidence
            logger.exception("feature engine failed on a record", extra={
                "topic": item.topic, "partition": group.number, "offset": item.offset})
            out.append(self.dead_letter(item.topic, group.number, item.offset, None, encode(item.record),
                                        f"feature engine error: {e!r}", now_ns))

    def _signal(self, group: Group, bars: list[BarSeries], out: list[Output], now_ns: int) -> None:
        """The regime signals of closed bars, at once; their features wait for :meth:`finish`."""
        detectors = dict(zip(group.engine.config.intervals_ns, group.detectors, strict=True))
        for bar in bars:
            update = detectors[bar.interval_ns].update(bar.instruments, bar.ts_event, bar.interval_ns,
                                                       bar.column("ret"))
            for signal in update.signals():
                out.append((self.topics.signals, signal.instrument.encode(), encode(signal)))
                self.tally.regime_changes += signal.changed
            group.regimes[bar.interval_ns] = update
            self.tally.bars_closed += len(bar.instruments)
        if bars and group.closed_at is None:
            group.closed_at = now_ns

    # ------------------------------------------------------------------ features of closed bars
    def finish(self, number: int) -> list[Output]:
        """Every feature of group ``number``'s closed bars not published yet, as bars (after their signals)."""
        group = self.groups.get(number)
        if group is None or not group.engine.unfinished:
            return []
        group.closed_at = None
        out: list[Output] = []
        for frame in group.engine.finish():
            for bar in frame.bars():
                out.append((self.topics.bars, bar.instrument.encode(), encode(bar)))
            group.latest[frame.interval_ns] = frame
        return self.count(out)

    def finishing(self, now_ns: int, wait_ns: int) -> list[int]:
        """The groups whose closed bars should get their features now: once no group is behind them (every group
        with bars has closed the same bars, so every signal of those bars is out), or once they have waited
        ``wait_ns``. A bar close costs milliseconds per group, and all groups close together: done one group at a
        time, the last group's signals would wait for every other group's features."""
        waiting = [g for g in self.groups.values() if g.closed_at is not None]
        if not waiting:
            return []
        front = min(g.open_end for g in self.groups.values() if g.open_end)
        return [g.number for g in waiting if g.open_end <= front or now_ns - (g.closed_at or 0) >= wait_ns]

    def dead_letter(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes, reason: str,
                    now_ns: int) -> Output:
        logger.warning("dead letter: %s", reason, extra={"topic": topic, "partition": partition, "offset": offset})
        self.tally.dead_letters += 1
        record = DeadLetter(topic=topic, partition=partition, offset=offset, key=key, value=value, reason=reason,
                            stage=STAGE, ts_recv=now_ns)
        return (self.topics.deadletter, topic.encode(), encode(record))

    # ------------------------------------------------------------------ idle timer
    def event_time(self, number: int) -> int:
        """The latest event time of group ``number``'s streams (0: none yet); the idle timer's silence counts
        from the last record that moved it."""
        group = self.groups.get(number)
        return max(group.clocks.values(), default=0) if group is not None else 0

    def quiet_run_ns(self, number: int) -> int:
        """How far the idle timer had moved group ``number``'s bars past its latest event time (0: not at all).
        A restored group's silence goes on from there: its quiet bars continue where they were, instead of
        waiting that long again (a replay's group idle for ten minutes would otherwise close nothing for ten
        minutes after a restart)."""
        group = self.groups.get(number)
        if group is None or not group.clocks or not group.open_end:
            return 0
        return max(0, group.open_end - group.base - self.event_time(number))

    def idle(self, number: int, caught_up: Callable[[str], bool], silence_ns: int, now_ns: int) -> list[Output]:
        """The idle timer's rule: when every stream of the group is caught up and no record came for
        ``silence_ns`` (at least the idle setting), the clock is the latest event time plus that silence, so the
        bars of a quiet group close on time (about when they end, for live data)."""
        group = self.groups.get(number)
        if group is None or not group.clocks or not all(caught_up(t) for t in self.types):
            return []
        return self.count(self.pump(group, caught_up, now_ns, clock=max(group.clocks.values()) + silence_ns))
