"""``orderflow sink``: Kafka output topics -> PostgreSQL, in batches, idempotent, with backpressure.

The consumer thread (this module) polls Kafka, decodes each message with :mod:`topics.codec`, turns it into rows
and fills a batch bounded by rows and age. A full batch is encoded for binary COPY here and goes to the
:class:`~sinks.writer.Writer` thread, which sends it to the database while the consumer keeps decoding (the
writer then holds the interpreter lock only briefly, so the database is not left waiting for data). Kafka
offsets are committed manually, only for batches the database has committed. When more than
``max_pending_rows`` row units are held, the consumer waits up to ``FULL_WAIT_S`` for the writer to make room (a
database that is merely slower than Kafka); when the writer retries an outage, or the wait ran out, the consumer
pauses its partitions (still polling, so it stays in the group) and resumes once the writer is healthy and the
backlog halved: memory stays bounded and no row is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from sinks import copybin
from sinks.batching import Accumulator, Backoff, Batch
from sinks.batching import TopicPartition as TP
from sinks.deadletter import DeadLetters
from sinks.errors import RowError, SinkBackpressure, SinkError
from sinks.metrics import HealthServer, SinkMetrics
from sinks.store import RowStore
from sinks.tables import BY_NAME, Item, TableSpec
from sinks.writer import FAILED, HEALTHY, RETRYING, Writer
from topics import codec
from topics.errors import DecodeError

logger = logging.getLogger(__name__)

CONSUME_BATCH = 5000
POLL_CAP_S = 0.1
LAG_EVERY_S = 2.0
PROGRESS_EVERY_S = 10.0
FULL_WAIT_S = 1.0  # how long a full but healthy writer is waited for before the consumer pauses


@dataclass
class SinkConfig:
    bootstrap_servers: str
    topics: dict[str, TableSpec]  # Kafka topic -> the table it feeds
    group_id: str = "orderflow-sink"
    batch_rows: int = 20_000
    batch_ms: float = 250.0
    max_pending_rows: int = 200_000
    dead_letter_topic: str = "orderflow.deadletter"
    metrics_port: int | None = None  # None: no HTTP server; 0: any free port
    bind_host: str = "127.0.0.1"  # the HTTP server listens here
    idle_exit_s: float | None = None  # stop once nothing arrived for this long and everything is stored
    drain_timeout_s: float = 30.0
    consume_batch: int = CONSUME_BATCH  # messages per poll: the most the pending bound can be overshot by
    consumer_config: dict[str, str] = field(default_factory=dict)

    def kafka_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers, "group.id": self.group_id,
            "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100, "queued.max.messages.kbytes": 32768, "client.id": "orderflow-sink",
            # 1 MB per partition and request (the default) makes a backlog arrive in many more round trips;
            # memory stays within queued.max.messages.kbytes
            "max.partition.fetch.bytes": 4 << 20,
            "error_cb": _kafka_error,
        }
        conf.update(self.consumer_config)
        return conf


def _kafka_error(err: KafkaError) -> None:
    logger.warning("kafka: %s", err)


class Sink:
    def __init__(self, config: SinkConfig, connect: Callable[[], RowStore], consumer: Any = None,
                 dead_letters: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.metrics = SinkMetrics()
        self._clock = clock
        self._consumer = consumer or Consumer(config.kafka_config())
        self._dead = dead_letters or DeadLetters(config.bootstrap_servers, config.dead_letter_topic)
        self._acc = Accumulator(config.batch_rows, config.batch_ms / 1000)
        queue_bound = max(config.batch_rows, config.max_pending_rows - config.batch_rows)
        self.writer = Writer(connect, self.metrics, queue_bound, Backoff(0.1, 5.0))
        self._decoders: dict[str, tuple[str, Callable[[Any], Any], Callable[[Any], Any], bool]] = {
            topic: spec.decoding() for topic, spec in config.topics.items()
        }
        self._stop = threading.Event()
        self._assigned: set[TP] = set()
        self._paused = False
        self._committed: dict[TP, int] = {}
        self._uncommitted: dict[TP, int] = {}
        self._http: HealthServer | None = None
        self._closing = False
        self._last_message_at = clock()
        self._last_lag_at = 0.0
        self._progress = _Progress(clock())
        self.rows_committed = 0
        self.first_message_at: float | None = None  # clock value when the first message arrived

    # -- lifecycle -------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish: it stores what it holds, commits, and returns."""
        self._stop.set()

    @property
    def http_port(self) -> int | None:
        return self._http.port if self._http else None

    def run(self) -> int:
        """Consume until stopped (or idle, with ``idle_exit_s``); returns the exit code."""
        self._start()
        try:
            while not self._stop.is_set():
                self._step()
                if self._idle_done():
                    logger.info("idle for %.1f s with everything stored: stopping", self.config.idle_exit_s)
                    break
            return self._drain()
        except KafkaException as e:
            raise SinkError(f"Kafka failed: {e}") from e
        finally:
            self._close()

    def _start(self) -> None:
        self._check_topics()
        self.writer.start()
        if self.config.metrics_port is not None:
            self._http = HealthServer(self.metrics, self.health, host=self.config.bind_host,
                                      port=self.config.metrics_port).start()
        self._consumer.subscribe(list(self.config.topics), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)
        logger.info("sink consuming %s as group %s", ", ".join(sorted(self.config.topics)), self.config.group_id)

    def _check_topics(self) -> None:
        """Fail fast, naming them, when the dead-letter topic or an input topic does not exist."""
        wanted = [self.config.dead_letter_topic, *self.config.topics]
        try:
            known = self._consumer.list_topics(timeout=10).topics
        except KafkaException as e:
            raise SinkError(f"cannot reach Kafka at {self.config.bootstrap_servers}: {e}") from e
        missing = [t for t in wanted if t not in known or known[t].error is not None]
        if missing:
            raise SinkError(f"topics missing on the broker: {', '.join(missing)} (`orderflow stack up` creates the "
                            "catalog topics)")

    def _close(self) -> None:
        self._closing = True  # a revoke while closing neither drains nor commits: run() did, or must not
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as e:
            logger.warning("closing the consumer: %s", e)
        self.writer.stop()
        self._dead.close()
        if self._http:
            self._http.stop()

    def _drain(self) -> int:
        if self._acc.batch.n_messages:
            self.writer.submit(self._acc.take(), force=True)
        drained = self.writer.wait_idle(self.config.drain_timeout_s)
        self._commit_finished()
        if self.writer.state == FAILED:
            logger.error("stopped: the database refused a batch (%s)", self.writer.error)
            return 1
        if not drained:
            logger.warning("stopped with rows not yet stored: their offsets stay uncommitted and will be replayed")
        logger.info("sink stopped: %d rows committed", self.rows_committed)
        return 0

    def _idle_done(self) -> bool:
        """Idle: consuming (not paused), nothing arrived for ``idle_exit_s`` since the last message or the last
        resume (after a pause librdkafka fetches anew, and that quiet is not the end of the topic), and
        everything is stored."""
        idle = self.config.idle_exit_s
        return (idle is not None and bool(self._assigned) and not self._paused
                and self._clock() - self._last_message_at >= idle
                and self._acc.batch.n_messages == 0 and self.writer.idle() and not self._uncommitted)

    # -- one turn of the loop --------------------------------------------------------------------------------

    def _step(self) -> None:
        if self.writer.state == FAILED:
            raise SinkError(f"the database writer stopped: {self.writer.error}")
        self._commit_finished()
        self._flow_control()
        now = self._clock()
        # paused, a due batch may be waiting for room in the writer's queue: poll at the cap instead of spinning
        timeout = POLL_CAP_S if self._paused else self._acc.wait_s(now, POLL_CAP_S)
        msgs = self._consumer.consume(self.config.consume_batch, timeout)
        now = self._clock()
        if msgs:
            if self.first_message_at is None:
                self.first_message_at = now
            self._handle(msgs, now)
            self._last_message_at = now
        if self._acc.due(now):
            self._flush()
        if now - self._last_lag_at >= LAG_EVERY_S:
            self._last_lag_at = now
            self._update_lag()
            self._progress.log(now, self)

    def _handle(self, msgs: list[Any], now: float) -> None:  # confluent Messages; Any keeps the hot loop lean
        """Decode ``msgs`` into rows and add them, with their offsets, to the batch being filled.

        librdkafka hands messages over in runs of one partition (thousands long when catching up): each run is
        decoded in one list comprehension and its offset taken from its last message."""
        rows: dict[str, list[Item]] = {}
        offsets: dict[TP, int] = {}
        per_topic: dict[str, int] = {}
        i, n = 0, len(msgs)
        while i < n:
            msg = msgs[i]
            if msg.error() is not None:
                self._on_message_error(msg, msg.error())
                i += 1
                continue
            topic, partition = msg.topic(), msg.partition()
            j = i + 1
            while j < n:
                m = msgs[j]
                if m.partition() != partition or m.topic() != topic or m.error() is not None:
                    break
                j += 1
            run = msgs[i:j]
            table, items = self._decode_run(topic, run)
            bucket = rows.get(table)
            if bucket is None:
                rows[table] = items
            else:
                bucket.extend(items)
            offsets[(topic, partition)] = run[-1].offset() + 1
            per_topic[topic] = per_topic.get(topic, 0) + len(run)
            i = j
        self._acc.extend(rows, offsets, n, now)
        for name, count in per_topic.items():
            self.metrics.messages.labels(name).inc(count)

    def _decode_run(self, topic: str, run: list[Any]) -> tuple[str, list[Item]]:
        """(table, items) of consecutive messages of one partition; a malformed message becomes a dead letter."""
        table, decode, convert, multi = self._decoders[topic]
        try:
            items = [convert(decode(m.value())) for m in run]
        except (msgspec.MsgspecError, TypeError, RowError):
            items = []
            for m in run:  # again one by one: keep the good ones, reject the bad ones
                try:
                    items.append(convert(decode(m.value())))
                except (msgspec.MsgspecError, TypeError, RowError) as e:
                    self._reject(m, e)
        if multi:
            items = [item for many in items for item in many]
        return table, items

    def _reject(self, msg: Message, error: Exception) -> None:
        """Send ``msg`` to the dead letters with a reason naming the field (via :func:`topics.codec.decode`)."""
        topic = msg.topic() or ""
        reason = str(error)
        if not isinstance(error, RowError):
            try:
                spec = self.config.topics[topic]
                codec.decode_message(spec.record_type, msg.value(), spec.framed)  # type: ignore[arg-type]
            except DecodeError as e:
                reason = str(e)
        self._dead.send(msg, reason)
        self.metrics.dead_letters.labels(topic).inc()

    def _on_message_error(self, msg: Message, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        where = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}
        if err.fatal():
            raise SinkError(f"fatal Kafka error: {err}")
        logger.warning("kafka message error: %s", err, extra=where)

    def _flush(self) -> None:
        batch = self._acc.batch
        self._encode(batch)
        try:
            self.writer.submit(batch)
        except SinkBackpressure as e:
            # a healthy writer gets FULL_WAIT_S to make room before the consumer pauses (see _wait_for_writer)
            room = self.writer.max_queued_rows - batch.size
            if self.writer.state != HEALTHY or not self.writer.wait_for_room(room, FULL_WAIT_S):
                self._pause(str(e))
                return
            self.writer.submit(batch)
        self._acc.take()

    def _encode(self, batch: Batch) -> None:
        """Encode the batch's COPY streams here, ahead of the writer: its thread then only sends bytes and never
        waits for the interpreter lock while the database waits for data."""
        for table, rows in batch.rows.items():
            if not (isinstance(rows, copybin.Encoded) and rows.current):  # new, or grown since (a backpressure wait)
                batch.rows[table] = copybin.Encoded(rows, BY_NAME[table])

    # -- flow control ----------------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused

    def pending_rows(self) -> int:
        return self._acc.pending_rows + self.writer.pending_rows

    def _flow_control(self) -> None:
        pending = self.pending_rows()
        state = self.writer.state
        if not self._paused and state == HEALTHY and pending >= self.config.max_pending_rows:
            pending = self._wait_for_writer()
            state = self.writer.state
        self.metrics.pending_rows.set(pending)
        if not self._paused and (state == RETRYING or pending >= self.config.max_pending_rows):
            self._pause("the database is unavailable" if state == RETRYING else f"{pending} rows pending")
        elif self._paused and state == HEALTHY and pending <= self.config.max_pending_rows // 2:
            self._resume(pending)

    def _wait_for_writer(self) -> int:
        """A healthy database that is only slower than Kafka: wait (briefly, not polling) for the writer to commit
        a batch rather than pause. Pausing empties librdkafka's prefetched queue of those partitions, which it
        then fetches again after the resume; not polling for this long is far inside max.poll.interval.ms, and
        librdkafka stops prefetching on its own at queued.max.messages.kbytes. Returns the rows now pending."""
        room = self.config.max_pending_rows - self._acc.pending_rows - 1
        self.writer.wait_for_room(room, FULL_WAIT_S)
        return self.pending_rows()

    def _pause(self, why: str) -> None:
        if self._paused:
            return
        self._consumer.pause(self._partitions(self._assigned))
        self._paused = True
        self.metrics.paused.set(1)
        logger.warning("pausing consumption: %s", why)

    def _resume(self, pending: int) -> None:
        self._consumer.resume(self._partitions(self._assigned))
        self._paused = False
        self._last_message_at = self._clock()  # the idle time (--idle-exit) counts from here
        self.metrics.paused.set(0)
        logger.info("resuming consumption (%d rows pending)", pending)

    @staticmethod
    def _partitions(tps: set[TP]) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in sorted(tps)]

    # -- offsets ---------------------------------------------------------------------------------------------

    def _commit_finished(self) -> None:
        for batch in self.writer.finished():
            self._uncommitted.update(batch.offsets)
            self.rows_committed += batch.n_rows
        todo = {tp: off for tp, off in self._uncommitted.items() if tp in self._assigned}
        self._uncommitted = todo
        if not todo:
            return
        self._dead.flush()
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in todo.items()],
                                  asynchronous=False)
        except KafkaException as e:
            self.metrics.commit_failures.inc()
            logger.warning("offset commit failed (kept for the next commit): %s", e)
            return
        self.metrics.commits.inc()
        self._committed.update(todo)
        self._uncommitted = {}

    def _update_lag(self) -> None:
        for topic, partition in sorted(self._assigned):
            try:
                low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            except KafkaException:
                continue
            if high < 0:
                continue
            base = self._committed.get((topic, partition), low)
            self.metrics.lag.labels(topic, str(partition)).set(max(0, high - base))

    # -- rebalance -------------------------------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._assigned |= {(p.topic, p.partition) for p in partitions}
        self._last_message_at = self._clock()
        logger.info("assigned %s", _names(partitions))
        if self._paused:
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        if self._closing:
            self._forget(partitions)
            return
        logger.info("revoked %s: storing and committing what is held", _names(partitions))
        if self._acc.batch.n_messages:
            self.writer.submit(self._acc.take(), force=True)
        if not self.writer.wait_idle(self.config.drain_timeout_s):
            logger.warning("rows of revoked partitions not stored in time: the next owner replays them")
        self._commit_finished()
        self._forget(partitions)

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        logger.warning("lost %s: the next owner replays what was not committed", _names(partitions))
        self._forget(partitions)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self._assigned.discard((p.topic, p.partition))
            self._uncommitted.pop((p.topic, p.partition), None)
            with contextlib.suppress(KeyError):
                self.metrics.lag.remove(p.topic, str(p.partition))
            self._committed.pop((p.topic, p.partition), None)

    # -- health ----------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        state = self.writer.state
        last = self.writer.last_commit_at
        return {
            "status": "ok" if state == HEALTHY else state,
            "writer": state,
            "paused": self._paused,
            "pending_rows": self.pending_rows(),
            "assigned_partitions": len(self._assigned),
            "rows_committed": self.rows_committed,
            "last_commit_age_s": None if last is None else round(time.time() - last, 3),
        }


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing"


class _Progress:
    """Logs rows committed per second every PROGRESS_EVERY_S."""

    def __init__(self, now: float) -> None:
        self.at = now
        self.rows = 0

    def log(self, now: float, sink: Sink) -> None:
        if now - self.at < PROGRESS_EVERY_S:
            return
        rows = sink.rows_committed
        rate = (rows - self.rows) / (now - self.at)
        self.at, self.rows = now, rows
        logger.info("%d rows committed (%.0f rows/s), %d pending, %s", rows, rate, sink.pending_rows(),
                    "paused" if sink.paused else "consuming",
                    extra={"rows_committed": rows, "rows_per_s": round(rate), "writer": sink.writer.state})
