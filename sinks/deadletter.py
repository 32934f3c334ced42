"""Malformed input goes to the dead-letter topic with the reason and its topic/partition/offset, then the sink
carries on. Offsets past a dead letter are committed only after the dead letter itself was delivered."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from sinks.errors import SinkError
from topics import codec
from topics.records import DeadLetter

logger = logging.getLogger(__name__)

STAGE = "sink"


class DeadLetters:
    """A small idempotent producer for :class:`~topics.records.DeadLetter` records."""

    def __init__(self, bootstrap_servers: str, topic: str, producer: Any = None) -> None:
        self.topic = topic
        self._producer = producer or Producer({
            "bootstrap.servers": bootstrap_servers, "enable.idempotence": True, "linger.ms": 5,
            "client.id": "orderflow-sink-deadletters",
        })
        self._unflushed = 0
        self._failed: list[str] = []
        self.sent = 0

    def send(self, msg: Message, reason: str) -> None:
        """Publish ``msg`` (its key and value unchanged) with ``reason``; delivery is checked by :meth:`flush`."""
        record = DeadLetter(
            topic=msg.topic() or "", partition=msg.partition() or 0, offset=msg.offset() or 0, key=msg.key(),
            value=msg.value() or b"", reason=reason, stage=STAGE, ts_recv=time.time_ns(),
        )
        logger.warning("dead letter: %s", reason,
                       extra={"topic": record.topic, "partition": record.partition, "offset": record.offset})
        self._producer.produce(self.topic, key=(msg.topic() or "").encode(), value=codec.encode(record),
                               on_delivery=self._delivered)
        self._producer.poll(0)
        self._unflushed += 1
        self.sent += 1

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed.append(str(err))

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every dead letter sent so far is delivered; raises :class:`SinkError` if one was not."""
        if self._unflushed:
            remaining = self._producer.flush(timeout_s)
            if remaining:
                raise SinkError(f"{remaining} dead letters not delivered to {self.topic} within {timeout_s} s")
            self._unflushed = 0
        if self._failed:
            raise SinkError(f"dead letters to {self.topic} failed: {self._failed[0]}")

    def close(self) -> None:
        self._producer.flush(10)
