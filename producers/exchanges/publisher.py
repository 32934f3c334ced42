"""Publishing normalized ticks to Kafka with confluent-kafka: idempotent, lz4, keyed ``venue:symbol``.

TradeTick -> ``ticks.trades``, QuoteTick -> ``ticks.quotes``, L2Update -> ``ticks.book`` (see :mod:`topics.catalog`).
Each Kafka record's timestamp is our receipt time ``ts_recv`` (ms); receipt-to-Kafka latency (that timestamp to the
broker's acknowledgement) is observed on delivery, at millisecond resolution.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from confluent_kafka import KafkaError, Message, Producer

from producers.exchanges.base import Record, VenueStats
from producers.exchanges.errors import ExchangeError
from producers.exchanges.queue import DropQueue
from topics.catalog import TICKS_BOOK, TICKS_QUOTES, TICKS_TRADES
from topics.logs import RateLimitedLog
from topics.records import L2Update, QuoteTick, TradeTick

logger = logging.getLogger(__name__)
_ratelimited = RateLimitedLog(logger)

TOPIC_OF: dict[type, str] = {TradeTick: TICKS_TRADES.name, QuoteTick: TICKS_QUOTES.name, L2Update: TICKS_BOOK.name}
# Every n-th acknowledged record feeds the latency histogram: reading its timestamp and the clock and filing it
# is a large share of a delivery report's cost, and every 8th of 100,000 records a second still samples the
# distribution 12,500 times a second.
LATENCY_SAMPLE_EVERY = 8
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """Cumulative-bucket histogram of seconds (Prometheus semantics), cheap enough for every message."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_S, keep_samples: bool = False) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # last slot: +Inf
        self.sum = 0.0
        self.count = 0
        self.samples: list[float] | None = [] if keep_samples else None

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds
        self.count += 1
        if self.samples is not None:
            self.samples.append(seconds)

    def quantile(self, q: float) -> float:
        """Exact from kept samples, else the upper bound of the bucket holding the quantile."""
        if self.samples:
            ordered = sorted(self.samples)
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
        target, seen = q * self.count, 0
        for bound, n in zip((*self.buckets, float("inf")), self.counts, strict=True):
            seen += n
            if seen >= target and n:
                return bound
        return 0.0


def producer_config(bootstrap: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,  # ORDERFLOW_EXCHANGE_LINGER_MS (orderflow ingest passes it); docs/benchmarks.md
        "batch.size": 1_000_000,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        "client.id": "orderflow-exchange-ingest",
    }
    conf.update(extra or {})
    return conf


class KafkaPublisher:
    """Drains a :class:`DropQueue` into Kafka; counts published records per venue."""

    def __init__(
        self, bootstrap: str, stats: Mapping[str, VenueStats], latency: LatencyHistogram,
        extra_config: Mapping[str, Any] | None = None, clock: Callable[[], int] = time.time_ns,
        topics: Mapping[str, str] | None = None,
    ) -> None:
        # one delivery callback for every message (cheaper than a closure per message); the Kafka timestamp of
        # each record is our receipt time (ms), so the callback measures receipt-to-acknowledgement from it
        self._producer = Producer({**producer_config(bootstrap, extra_config), "on_delivery": self._delivered})
        names = {**{t.__name__: name for t, name in TOPIC_OF.items()}, **(topics or {})}
        self._topic_of = {t: names[t.__name__] for t in TOPIC_OF}  # record type -> topic (tests rename them)
        self._stats = stats
        self.latency = latency
        self._clock = clock
        self._encode = msgspec.json.Encoder().encode
        self._keys: dict[tuple[str, str], bytes] = {}
        self.errors = 0
        self.in_flight = 0
        self.acked = 0  # records the broker acknowledged

    def _key(self, r: Record) -> bytes:
        k = (r.venue, r.symbol)
        key = self._keys.get(k)
        if key is None:
            key = self._keys[k] = f"{r.venue}:{r.symbol}".encode()
        return key

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        self.in_flight -= 1
        if err is not None:
            self.errors += 1
            _ratelimited.warning("delivery", time.monotonic(), "delivery to %s failed: %s", msg.topic(), err)
            return
        self.acked += 1
        if self.acked % LATENCY_SAMPLE_EVERY == 0:
            self.latency.observe((self._clock() // 1_000_000 - msg.timestamp()[1]) / 1e3)

    def publish(self, batch: list[Record]) -> None:
        """Hand ``batch`` to librdkafka; raises ``BufferError`` (with the unsent tail kept) when its queue is full."""
        produce, encode, stats = self._producer.produce, self._encode, self._stats
        topic_of = self._topic_of
        for i, r in enumerate(batch):
            try:
                produce(topic_of[type(r)], encode(r), self._key(r), timestamp=r.ts_recv // 1_000_000)
            except BufferError:
                del batch[:i]
                raise
            self.in_flight += 1
            stats[r.venue].published += 1
        self._producer.poll(0)

    async def run(self, queue: DropQueue, stop: asyncio.Event, batch_size: int = 5_000) -> None:
        """Publish until ``stop`` is set and the queue is empty; deliveries are served every few ms meanwhile."""
        poller = asyncio.create_task(self._serve_deliveries())
        waker = asyncio.create_task(_wake_on(stop, queue))
        try:
            while not (stop.is_set() and not len(queue)):
                batch = await queue.get_batch(batch_size)
                while batch:
                    try:
                        self.publish(batch)
                        batch = []
                    except BufferError:
                        self._producer.poll(0)
                        await asyncio.sleep(0.005)  # librdkafka's queue is full: let it drain, the DropQueue absorbs
                await asyncio.sleep(0)  # let the sockets fill the next batch
        finally:
            poller.cancel()
            waker.cancel()

    async def _serve_deliveries(self, period_s: float = 0.005) -> None:
        """Serve delivery reports until cancelled (also while the sockets shut down)."""
        poll = self._producer.poll
        while True:
            poll(0)
            await asyncio.sleep(period_s)

    def flush(self, timeout: float = 10.0) -> int:
        """Wait for outstanding deliveries; returns how many are still undelivered."""
        remaining = int(self._producer.flush(timeout))
        if remaining:
            raise ExchangeError(f"{remaining} messages not delivered to Kafka within {timeout}s")
        return remaining


async def _wake_on(stop: asyncio.Event, queue: DropQueue) -> None:
    await stop.wait()
    queue.wake()
