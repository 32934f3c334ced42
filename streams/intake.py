"""The hot topics' records read by librdkafka, beside Faust's consumer.

Faust reads through aiokafka in a thread of its own. aiokafka does not fetch a partition again while records it
fetched from it wait to be handed out, and the hand-out runs on the agent's event loop: on busy cores each fetch
round trip waits behind the agent's work on the records before it (``docs/benchmarks.md``: the features worker's
arrival lag was p50 50-100 ms where a plain librdkafka reader of the same topics saw 15-17 ms).

With ``ORDERFLOW_STREAMS_INTAKE=librdkafka`` (the default) the records of the hot topics (``app.batch_topics``)
come from a librdkafka consumer instead. It fetches in librdkafka's native threads while the agent works; a Python
thread polls it and hands each poll's records to the event loop, grouped per partition, where
:class:`IntakeConsumer` delivers them through the batching path (:mod:`streams.batching`) as if aiokafka had
fetched them. Faust keeps everything else: the consumer group and its assignment, the tables and their
changelogs, acks and offset commits (aiokafka commits the offsets of records read here), flow control.

The librdkafka consumer joins no group. When Faust resumes the flow after a rebalance (its table recovery done,
its partitions sought to their committed offsets), it is assigned the hot partitions Faust owns, from those
offsets; when Faust pauses them, stops the flow or loses them, they are unassigned. aiokafka leaves them alone
(paused in aiokafka from the moment they are assigned).

Each assignment of a partition has an epoch. Records carry the epoch they were read under, and records of an
earlier one (read before a pause, a rebalance, a seek back) are dropped, never delivered: every assignment starts
at the offset Faust would read next, and its records come in offset order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, cast

from confluent_kafka import OFFSET_STORED, Consumer, KafkaError, TopicPartition
from faust.types import TP

logger = logging.getLogger(__name__)

POLL_TIMEOUT_S = 0.05  # the reader thread looks at its commands at least this often
WATERMARKS_EVERY_S = 0.1  # end offsets of the partitions without records read again this often
FETCH_WAIT_MS = 100  # a fetch returns as soon as FETCH_MIN_BYTES came, or after this long without (idle)
FETCH_MIN_BYTES = 1  # each frame as it lands (docs/streams.md, "The intake's fetch")
MAX_PENDING_BYTES = 64 << 20  # read but not yet delivered: the reader waits above this (backpressure)
RECORD_OVERHEAD = 64  # bytes a record counts for besides its value


class IntakeRecord:
    """One record as the batching path and the agents read it (the fields of aiokafka's ``ConsumerRecord``)."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")
    timestamp_type = 0  # CreateTime
    checksum = None

    def __init__(self, msg: Any) -> None:
        self.topic: str = msg.topic()
        self.partition: int = msg.partition()
        self.offset: int = msg.offset()
        stamp = msg.timestamp()[1]
        self.timestamp: int | None = stamp if stamp >= 0 else None
        self.key: bytes | None = msg.key()
        self.value: bytes | None = msg.value()
        self.headers = msg.headers() or []

    @property
    def serialized_key_size(self) -> int:
        return -1 if self.key is None else len(self.key)

    @property
    def serialized_value_size(self) -> int:
        return -1 if self.value is None else len(self.value)


Arrival = list[tuple[TP, int, list[IntakeRecord]]]  # (partition, epoch, records in offset order) of one poll


class Intake:
    """A librdkafka consumer of assigned partitions, polled by a thread of its own.

    ``arrived`` is called on ``loop`` with each poll's records; :meth:`assign` and :meth:`unassign` are called on
    the loop's thread and applied by the reader thread between two polls."""

    def __init__(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop, arrived: Callable[[Arrival], None],
                 max_records: int = 500) -> None:
        self._consumer = Consumer(config)
        self._loop, self._arrived, self._max_records = loop, arrived, max_records
        self._commands: deque[tuple[str, TP, int, int]] = deque()
        self._epochs: dict[TP, int] = {}  # the loop's view: the epoch of each partition's latest (un)assignment
        self._live: set[TP] = set()  # assigned, on the loop's view
        self._highs: dict[TP, int] = {}  # end offsets as of librdkafka's last fetch, kept by the reader thread
        self._pending = 0
        self._lock = threading.Lock()
        self._room = threading.Event()
        self._room.set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orderflow-intake", daemon=True)

    @staticmethod
    def settings(bootstrap: str, app_id: str, fetch_wait_ms: int = FETCH_WAIT_MS,
                 fetch_min_bytes: int = FETCH_MIN_BYTES) -> dict[str, Any]:
        """The consumer's configuration. A fetch returns once ``fetch_min_bytes`` came, or after ``fetch_wait_ms``.
        By default each frame is handed over as it lands, and an idle partition costs the broker a fetch every
        ``fetch_wait_ms``; under load the records that land while the worker handles a fetch make the next one
        (docs/streams.md)."""
        return {
            "bootstrap.servers": bootstrap,
            "group.id": app_id,  # Faust's group, for its committed offsets only: assign() joins no group
            "client.id": f"{app_id}-intake",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",  # an offset out of range (retention): as Faust's consumer does
            "fetch.wait.max.ms": fetch_wait_ms,
            "fetch.min.bytes": fetch_min_bytes,
            "fetch.error.backoff.ms": 100,
            "enable.partition.eof": False,
            "log_level": 4,  # warnings and above from librdkafka
        }

    # ------------------------------------------------------------------ the loop's side
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the reader thread and close the consumer (blocks up to a poll's timeout plus the close)."""
        self._stopping.set()
        self._room.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._consumer.close()

    def live(self, tp: TP) -> bool:
        return tp in self._live

    def epoch(self, tp: TP) -> int:
        return self._epochs.get(tp, 0)

    def assign(self, tp: TP, offset: int | None) -> None:
        """Read ``tp`` from ``offset`` under a new epoch; None: from the group's committed offset, or the log's
        start when it has none (``auto.offset.reset``), which is where Faust's consumer starts too."""
        with self._lock:
            epoch = self._epochs[tp] = self._epochs.get(tp, 0) + 1
            self._live.add(tp)
            self._commands.append(("assign", tp, OFFSET_STORED if offset is None else offset, epoch))

    def unassign(self, tps: Iterable[TP]) -> None:
        """Stop reading ``tps``; their records read so far are stale from now on. Faust stops the flow from its
        consumer thread (a rebalance starts there), so this takes the lock."""
        with self._lock:
            for tp in tps:
                if tp in self._live:
                    self._live.discard(tp)
                    epoch = self._epochs[tp] = self._epochs.get(tp, 0) + 1
                    self._commands.append(("unassign", tp, 0, epoch))

    def unassign_all(self) -> None:
        self.unassign(list(self._live))

    def delivered(self, arrival: Arrival) -> None:
        """The records of ``arrival`` were delivered or dropped: room for the reader."""
        size = pending_size(arrival)
        with self._lock:
            self._pending -= size
            if self._pending <= MAX_PENDING_BYTES:
                self._room.set()

    def highwater(self, tp: TP) -> int | None:
        """The partition's end offset as of librdkafka's last fetch of it (None: not known yet). The reader
        thread reads it (librdkafka's consumer takes no other call while it polls)."""
        return self._highs.get(tp)

    # ------------------------------------------------------------------ the reader thread
    def _run(self) -> None:
        epochs: dict[TP, int] = {}  # the reader's view: the epoch its records are read under
        next_marks = 0.0
        while not self._stopping.is_set():
            try:
                self._apply_commands(epochs)
                self._room.wait()
                if self._stopping.is_set():
                    break
                messages = self._poll()
                now = time.monotonic()
                if now >= next_marks:
                    self._read_watermarks(epochs)
                    next_marks = now + WATERMARKS_EVERY_S
                if messages:
                    self._hand_over(messages, epochs)
            except Exception:  # librdkafka raised: keep reading after a pause, the partitions stay assigned
                logger.exception("the intake's librdkafka consumer failed; reading on in 0.5 s")
                self._stopping.wait(0.5)

    def _poll(self) -> list[Any]:
        """What librdkafka holds now, up to ``max_records``; waits up to a poll's timeout for the first record
        only (``consume`` alone waits out its whole timeout unless the batch fills)."""
        first = self._consumer.poll(POLL_TIMEOUT_S)
        if first is None:
            return []
        return [first, *self._consumer.consume(self._max_records - 1, 0)] if self._max_records > 1 else [first]

    def _read_watermarks(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            high = self._consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), cached=True)[1]
            if high >= 0:
                self._highs[tp] = high

    def _apply_commands(self, epochs: dict[TP, int]) -> None:
        while self._commands:
            action, tp, offset, epoch = self._commands.popleft()
            part = TopicPartition(tp.topic, tp.partition)
            if tp in epochs:
                self._consumer.incremental_unassign([part])
                del epochs[tp]
                self._highs.pop(tp, None)
            if action == "assign":
                part.offset = offset
                self._consumer.incremental_assign([part])
                epochs[tp] = epoch

    def _hand_over(self, messages: list[Any], epochs: dict[TP, int]) -> None:
        by_tp: dict[tuple[str, int], list[IntakeRecord]] = {}
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    logger.warning("intake read error: %s", error, extra={
                        "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()})
                continue
            record = IntakeRecord(msg)
            key = (record.topic, record.partition)
            records = by_tp.get(key)
            if records is None:
                records = by_tp[key] = []
            records.append(record)
        arrival: Arrival = []
        for (topic, partition), records in by_tp.items():
            tp = TP(topic, partition)
            epoch = epochs.get(tp)
            if epoch is None:
                continue  # read before its unassignment took effect
            arrival.append((tp, epoch, records))
        self._read_watermarks(tp for tp, _, _ in arrival)
        if not arrival:
            return
        size = pending_size(arrival)
        with self._lock:
            self._pending += size
            if self._pending > MAX_PENDING_BYTES:
                self._room.clear()
        self._loop.call_soon_threadsafe(self._arrived, arrival)


class IntakeConsumer:
    """Mixin for the workers' Faust consumer (before :class:`streams.batching.BatchingConsumer`): with
    ``app.intake == "librdkafka"``, the records of ``app.batch_topics`` come from an :class:`Intake`."""

    app: Any
    flow_active: bool
    _committed_offset: Any
    _intake: Intake | None = None
    _hot: frozenset[str] = frozenset()  # the topics the running intake reads
    _arrivals: asyncio.Queue[Arrival]

    def intake_topics(self) -> frozenset[str]:
        """The topics the intake reads (empty when aiokafka reads everything)."""
        return self.app.batch_topics if self.app.intake == "librdkafka" else frozenset()

    async def on_start(self) -> None:
        this = cast(Any, self)
        topics = self.intake_topics()
        if topics:
            self._arrivals = asyncio.Queue()
            config = Intake.settings(self.app.bootstrap, self.app.conf.id, *self.app.intake_fetch)
            self._intake = Intake(config, asyncio.get_running_loop(), self._arrivals.put_nowait,
                                  max_records=self.app.batch_max)
            self._hot = topics
            self._intake.start()
            this.add_future(self._deliver_arrivals())
            logger.info("records of %s read by librdkafka (intake)", ", ".join(sorted(topics)))
        await cast(Any, super()).on_start()

    async def on_stop(self) -> None:
        await cast(Any, super()).on_stop()
        if self._intake is not None:
            intake, self._intake, self._hot = self._intake, None, frozenset()
            await asyncio.get_running_loop().run_in_executor(None, intake.stop)

    # ------------------------------------------------------------------ Faust's flow control
    def stop_flow(self) -> None:
        cast(Any, super()).stop_flow()
        if self._intake is not None:
            self._intake.unassign_all()

    def resume_flow(self) -> None:
        cast(Any, super()).resume_flow()
        self._assign_intake()

    def pause_partitions(self, tps: Iterable[TP]) -> None:
        tps = list(tps)
        cast(Any, super()).pause_partitions(tps)
        if self._intake is not None:
            self._intake.unassign(tps)

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        cast(Any, super()).resume_partitions(tps)
        if self.flow_active:
            self._assign_intake()

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        if self._intake is not None:
            self._intake.unassign(revoked)
        await cast(Any, super()).on_partitions_revoked(revoked)

    def highwater(self, tp: TP) -> int:
        if tp.topic in self._hot:
            return cast(int, cast(Intake, self._intake).highwater(tp))
        return cast(int, cast(Any, super()).highwater(tp))

    def _assign_intake(self) -> None:
        """Assign the hot partitions Faust reads now and the intake does not, from their committed offsets."""
        intake = self._intake
        if intake is None:
            return
        for tp in cast(Any, self)._get_active_partitions():
            if tp.topic in self._hot and not intake.live(tp):
                intake.assign(tp, self._committed_offset.get(tp))

    # ------------------------------------------------------------------ delivery
    async def _deliver_arrivals(self) -> None:
        this = cast(Any, self)
        while True:
            arrival = await self._arrivals.get()
            while not self._arrivals.empty():  # what came while the agent worked: one batch per partition
                arrival = arrival + self._arrivals.get_nowait()
            intake = self._intake
            if intake is None:
                return
            try:
                await self._deliver_arrival(this, intake, merged(arrival))
            finally:
                intake.delivered(arrival)

    async def _deliver_arrival(self, this: Any, intake: Intake, arrival: Arrival) -> None:
        most = self.app.batch_max
        for tp, epoch, records in arrival:
            if epoch != intake.epoch(tp) or not self.flow_active:
                continue  # read under an earlier assignment: its partition starts again from Faust's offset
            if tp not in this._get_active_partitions() and tp not in this._buffered_partitions:
                intake.unassign([tp])  # paused meanwhile: read again from the committed offset when resumed
                continue
            await this._deliver_batches(tp, records, most, partial(_is_epoch, intake, tp, epoch))


def _is_epoch(intake: Intake, tp: TP, epoch: int) -> bool:
    return intake.epoch(tp) == epoch


def pending_size(arrival: Arrival) -> int:
    """The bytes ``arrival`` holds, for the reader's backpressure: values plus a fixed cost per record."""
    return sum(len(r.value or b"") + RECORD_OVERHEAD for _, _, records in arrival for r in records)


def merged(arrival: Arrival) -> Arrival:
    """Consecutive arrivals as one: each partition's records of one epoch joined, in offset order."""
    joined: dict[tuple[TP, int], list[IntakeRecord]] = {}
    for tp, epoch, records in arrival:
        key = (tp, epoch)
        if key in joined:
            joined[key] = joined[key] + records
        else:
            joined[key] = records
    return [(tp, epoch, records) for (tp, epoch), records in joined.items()]
