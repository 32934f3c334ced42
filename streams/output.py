"""Producers of the worker's outputs: librdkafka (confluent-kafka) by default, Faust's own producer as an option.

Outputs of a framed topic (``TopicSpec.framed``: ``book.bbo`` and ``book.trades``) leave as frames: the records one
:meth:`OutputSink.send` call holds for one key become one Kafka message, a JSON array in their order (one record
alone stays a plain JSON object), as the exchange ingest frames its ticks. A busy book sends one message per key
per batch instead of one per record; a quiet one sends each record as it comes, with no wait added. Consumers
decode either form (:func:`topics.codec.decode_records`).

Both hand messages over without waiting (``send``) and make everything handed over durable on ``flush``, which a
checkpoint awaits before it writes: a checkpoint never covers a frame whose outputs could still be lost. A failed
delivery makes the next ``flush`` raise :class:`~streams.errors.DeliveryError`; the worker then stops instead of
committing past outputs it could not publish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer

from streams.errors import DeliveryError
from streams.publisher import Output

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0
POLL_EVERY = 10_000  # messages between two polls of the producer (a poll costs a few hundred µs)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # the dead-letter topic's limit; a frame up to 8 MB plus its envelope
FRAME_MAX_RECORDS = 1_000  # records of one key in one output message at most
FRAME_MAX_BYTES = 512 * 1024  # and this many bytes of JSON (a topic's default max.message.bytes is 1 MB)


class OutputSink(Protocol):
    def send(self, outputs: Sequence[Output]) -> None:
        """Hand ``outputs`` to the producer, in order, without waiting."""

    async def flush(self) -> None:
        """Return once every output handed over so far is acknowledged by the broker."""

    async def close(self) -> None: ...


def confluent_config(bootstrap: str, client_id: str, linger_ms: float) -> dict[str, Any]:
    """Idempotent, acks=all, Java-compatible partitioning (murmur2), ``linger_ms`` as configured
    (``ORDERFLOW_STREAMS_OUTPUT_LINGER_MS``, 0 by default): an output leaves at once, and under load librdkafka still
    batches what gathers while its requests are in flight. A 1 ms linger added about 1 ms to every BBO update at 20,000
    records/s; fractions of a millisecond behaved like a whole one (docs/benchmarks.md)."""
    return {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": linger_ms,
        "partitioner": "murmur2_random",
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "message.max.bytes": MAX_MESSAGE_BYTES + 65_536,
        "batch.size": 1_000_000,
        "delivery.report.only.error": True,
    }


def frame_outputs(outputs: Sequence[Output], topics: frozenset[str], max_records: int = FRAME_MAX_RECORDS,
                  max_bytes: int = FRAME_MAX_BYTES) -> list[Output]:
    """``outputs`` with the records of each (topic, key) of the framed ``topics`` joined into frames.

    A frame holds at most ``max_records`` records and ``max_bytes`` of JSON (one bigger record goes alone). The
    other outputs come first, in their order; then the frames, each key's records in their order.
    """
    if not topics:
        return list(outputs)
    out: list[Output] = []
    runs: dict[tuple[str, bytes], list[bytes]] = {}
    for output in outputs:
        topic, key, value = output
        if topic in topics:
            run = runs.get((topic, key))
            if run is None:
                runs[(topic, key)] = [value]
            else:
                run.append(value)
        else:
            out.append(output)
    for (topic, key), values in runs.items():
        if len(values) == 1:
            out.append((topic, key, values[0]))
            continue
        start, size = 0, 1  # the frame's bytes so far: "[" and each record with its "," (or the closing "]")
        for i, value in enumerate(values):
            if i > start and (i - start >= max_records or size + len(value) + 1 > max_bytes):
                out.append((topic, key, _frame(values[start:i])))
                start, size = i, 1
            size += len(value) + 1
        out.append((topic, key, _frame(values[start:])))
    return out


def _frame(values: list[bytes]) -> bytes:
    """A JSON array of the JSON ``values`` (one value stays itself)."""
    return values[0] if len(values) == 1 else b"[" + b",".join(values) + b"]"


class ConfluentSink:
    """Outputs through a confluent-kafka (librdkafka) producer; delivery is tracked by error callbacks only.

    ``framed``: the topics whose outputs leave as frames (see the module's docstring)."""

    def __init__(self, bootstrap: str, client_id: str, linger_ms: float,
                 framed: frozenset[str] = frozenset()) -> None:
        config = confluent_config(bootstrap, client_id, linger_ms)
        config["on_delivery"] = self._on_delivery
        self.linger_ms = linger_ms
        self.producer = Producer(config)
        self.framed = framed
        self.error: KafkaError | None = None
        self.sent = 0  # Kafka messages handed over
        self._polled = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            logger.error("output not delivered: %s", err, extra={"topic": msg.topic(), "partition": msg.partition()})
            self.error = self.error or err

    def send(self, outputs: Sequence[Output]) -> None:
        produce = self.producer.produce
        outputs = frame_outputs(outputs, self.framed)
        for topic, key, value in outputs:
            try:
                produce(topic, value, key)
            except BufferError:  # the local queue is full: let librdkafka drain it, then retry once
                self.producer.poll(1.0)
                produce(topic, value, key)
        self.sent += len(outputs)
        if self.sent - self._polled >= POLL_EVERY:  # serve error reports now and then; flush serves the rest
            self._polled = self.sent
            self.producer.poll(0)

    async def flush(self) -> None:
        loop = asyncio.get_running_loop()
        left = await loop.run_in_executor(None, self.producer.flush, FLUSH_TIMEOUT_S)
        if self.error is not None:
            raise DeliveryError(f"an output was not delivered: {self.error}")
        if left:
            raise DeliveryError(f"{left} outputs still undelivered after {FLUSH_TIMEOUT_S:.0f} s")

    async def close(self) -> None:
        await self.flush()


class FaustSink:
    """Outputs through the Faust app's producer (aiokafka), raw bytes: ``topic.send_soon``; ``framed`` as in
    :class:`ConfluentSink`."""

    def __init__(self, app: Any, framed: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.framed = framed
        self._topics: dict[str, Any] = {}
        self._pending: list[asyncio.Future[Any]] = []

    def _topic(self, name: str) -> Any:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = self.app.topic(name, key_serializer="raw", value_serializer="raw")
        return topic

    def send(self, outputs: Sequence[Output]) -> None:
        pending = self._pending
        for name, key, value in frame_outputs(outputs, self.framed):
            pending.append(self._topic(name).send_soon(key=key, value=value))

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        results = await asyncio.gather(*pending, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise DeliveryError(f"{len(errors)} outputs not delivered, first: {errors[0]!r}")

    async def close(self) -> None:
        await self.flush()


class MemorySink:
    """Keeps outputs in a list; for unit tests."""

    def __init__(self) -> None:
        self.outputs: list[Output] = []
        self.flushed = 0

    def send(self, outputs: Sequence[Output]) -> None:
        self.outputs.extend(outputs)

    async def flush(self) -> None:
        self.flushed = len(self.outputs)

    async def close(self) -> None:
        pass
