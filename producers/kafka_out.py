"""Publishing frames to Kafka with confluent-kafka: idempotent, compressed, every delivery report checked.

librdkafka retries transient failures itself (the producer is idempotent, so retries never duplicate); a delivery
report that still carries an error is final: it is counted, logged with topic, partition and error, and makes the
command exit non-zero. Nothing accepted is ever dropped silently.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from producers.errors import ProducerError
from producers.framing import frame_key
from producers.metrics import ProducerMetrics
from topics import codec
from topics.logs import RateLimitedLog
from topics.records import MboFrame

logger = logging.getLogger(__name__)

COMPRESSIONS = ("lz4", "zstd", "snappy", "gzip", "none")
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # the mbo.frames topic's max.message.bytes
POLL_EVERY = 8  # messages between two polls for delivery reports


class DeliveryError(ProducerError):
    """Kafka reported that messages could not be delivered, or the producer failed fatally."""


@dataclass
class DeliveryStats:
    """What was handed to Kafka and what the broker acknowledged."""

    frames_sent: int = 0
    records_sent: int = 0
    bytes_sent: int = 0
    frames_delivered: int = 0
    records_delivered: int = 0
    frames_failed: int = 0
    records_failed: int = 0
    raw_sent: int = 0  # raw (non-frame) messages, e.g. the simulator's malformed ones
    raw_delivered: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class FrameSink(Protocol):
    """Where frames go: Kafka in production, a list in unit tests."""

    stats: DeliveryStats
    fatal: str | None

    def send(self, frame: MboFrame) -> None: ...

    def poll(self) -> None: ...

    def flush(self, timeout_s: float) -> int: ...

    def queue_depth(self) -> int: ...


def producer_config(
    bootstrap: str, compression: str = "lz4", linger_ms: float = 20.0, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """confluent-kafka settings tuned for throughput of large frames on one partition key per instrument."""
    if compression not in COMPRESSIONS:
        raise ProducerError(f"compression {compression!r}: expected one of {', '.join(COMPRESSIONS)}")
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,  # acks=all, no duplicates from retries, order kept per partition
        "compression.type": compression,
        "linger.ms": linger_ms,
        "batch.size": 1_000_000,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 200_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "partitioner": "murmur2_random",  # the Java client's partitioner: same key, same partition as Faust's
        "statistics.interval.ms": 0,
    }
    config.update(extra or {})
    return config


class KafkaFrameSink:
    """Sends frames (and raw messages) to one topic and accounts for every delivery report."""

    def __init__(
        self, bootstrap: str, topic: str, compression: str = "lz4", linger_ms: float = 20.0,
        metrics: ProducerMetrics | None = None, extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.bootstrap = bootstrap
        self.metrics = metrics
        self.stats = DeliveryStats()
        self.fatal: str | None = None
        self.first_error: str | None = None
        self._log = RateLimitedLog(logger, 5.0)
        config = producer_config(bootstrap, compression, linger_ms, extra_config)
        config["error_cb"] = self._on_error
        config["logger"] = logging.getLogger("producers.rdkafka")  # librdkafka's own log lines, through logging
        self._producer = Producer(config)
        self._encode = codec.encode
        self._since_poll = 0

    def require_topic(self, timeout_s: float = 5.0) -> None:
        """Fail fast, naming the topic, when the broker cannot be reached or the topic does not exist (a topic
        created a moment ago gets a few seconds to show up in the metadata)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                meta = self._producer.list_topics(timeout=max(1.0, deadline - time.monotonic()))
            except KafkaException as e:
                raise DeliveryError(f"cannot reach Kafka at {self.bootstrap}: {e}") from None
            topic = meta.topics.get(self.topic)
            if topic is not None and topic.error is None:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if topic is None:
            raise DeliveryError(
                f"topic {self.topic!r} does not exist on {self.bootstrap}; create it "
                "(`orderflow stack up` creates the catalog's topics)"
            )
        raise DeliveryError(f"topic {self.topic!r} on {self.bootstrap}: {topic.error.str()}")

    def send(self, frame: MboFrame) -> None:
        """Queue one frame; blocks (serving delivery reports) while the local queue is full."""
        value = self._encode(frame)
        n = len(frame)
        self._produce(frame_key(frame), value, partial(self._on_frame_delivery, n))
        stats = self.stats
        stats.frames_sent += 1
        stats.records_sent += n
        stats.bytes_sent += len(value)
        if self.metrics is not None:
            self.metrics.frames_sent.inc()
            self.metrics.records_sent.inc(n)
            self.metrics.bytes_sent.inc(len(value))

    def send_raw(self, key: bytes | None, value: bytes) -> None:
        """Queue arbitrary bytes (the simulator's malformed messages); counted apart from frames."""
        self._produce(key, value, self._on_raw_delivery)
        self.stats.raw_sent += 1

    def _produce(self, key: bytes | None, value: bytes, callback: Any) -> None:
        while True:
            try:
                self._producer.produce(self.topic, value, key, on_delivery=callback)
                break
            except BufferError:
                self._producer.poll(0.005)  # queue full: let librdkafka drain it
        self._since_poll += 1
        if self._since_poll >= POLL_EVERY:  # serve delivery reports every few messages, not after each
            self._since_poll = 0
            self._producer.poll(0)

    def poll(self) -> None:
        self._producer.poll(0)

    def queue_depth(self) -> int:
        return len(self._producer)

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for every queued message's delivery report; returns how many are left."""
        deadline = time.monotonic() + timeout_s
        left = len(self._producer)
        while left and time.monotonic() < deadline and self.fatal is None:
            left = self._producer.flush(min(0.5, max(0.0, deadline - time.monotonic())))
        return int(left)

    def _on_frame_delivery(self, records: int, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.stats.frames_delivered += 1
            self.stats.records_delivered += records
            if self.metrics is not None:
                self.metrics.records_delivered.inc(records)
            return
        self.stats.frames_failed += 1
        self.stats.records_failed += records
        if self.metrics is not None:
            self.metrics.delivery_failures.inc()
        self._report_failure(err, msg, records)

    def _on_raw_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.stats.raw_delivered += 1
            return
        self.stats.frames_failed += 1
        self._report_failure(err, msg, 0)

    def _report_failure(self, err: KafkaError, msg: Message, records: int) -> None:
        text = f"delivery to {msg.topic()} [{msg.partition()}] failed: {err.str()}"
        self.first_error = self.first_error or text
        key = msg.key()
        logger.error(
            "%s (%d records, key %r)", text, records, key,
            extra={"topic": msg.topic(), "partition": msg.partition(), "error": err.name(), "fatal": err.fatal()},
        )

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = f"fatal producer error: {err.str()}"
            logger.error("%s", self.fatal, extra={"topic": self.topic, "error": err.name()})
            return
        self._log.warning(err.name(), time.monotonic(), "kafka: %s", err.str())

    def check(self) -> None:
        """Raise :class:`DeliveryError` if anything failed for good."""
        if self.fatal:
            raise DeliveryError(self.fatal)
        if self.stats.frames_failed:
            raise DeliveryError(
                f"{self.stats.frames_failed} messages ({self.stats.records_failed} records) were not delivered; "
                f"first: {self.first_error}"
            )
