"""Publishing normalized ticks to Kafka with confluent-kafka: idempotent, lz4, keyed ``venue:symbol``, framed.

TradeTick -> ``ticks.trades``, QuoteTick -> ``ticks.quotes``, L2Update -> ``ticks.book`` (see :mod:`topics.catalog`).
A Kafka message is a *frame*: a JSON array of consecutive records of one ``venue:symbol`` (the MBO frames' idea,
one level up from Kafka's batches). The publisher frames what the queue holds when it drains it, so a quiet feed
sends one record per message (no wait is added) and a busy one up to :data:`FRAME_MAX_RECORDS`: one produce call,
one delivery report and one broker record per frame instead of per tick. Consumers decode either form
(:func:`topics.codec.decode_records`).

Each Kafka message's timestamp is the receipt time ``ts_recv`` (ms) of its oldest record; receipt-to-Kafka latency
(that timestamp to the broker's acknowledgement) is observed on delivery for every record of the frame, at
millisecond resolution: an upper bound for the frame's younger records.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import msgspec
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from producers.exchanges.base import Record, VenueStats
from producers.exchanges.errors import ExchangeError
from producers.exchanges.queue import DropQueue
from topics.catalog import TICKS_BOOK, TICKS_QUOTES, TICKS_TRADES
from topics.logs import RateLimitedLog
from topics.records import L2Update, QuoteTick, TradeTick

logger = logging.getLogger(__name__)
_ratelimited = RateLimitedLog(logger)

TOPIC_OF: dict[type, str] = {TradeTick: TICKS_TRADES.name, QuoteTick: TICKS_QUOTES.name, L2Update: TICKS_BOOK.name}
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """Cumulative-bucket histogram of seconds (Prometheus semantics), cheap enough for every message."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_S, keep_samples: bool = False) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # last slot: +Inf
        self.sum = 0.0
        self.count = 0
        self.samples: list[float] | None = [] if keep_samples else None

    def observe(self, seconds: float, n: int = 1) -> None:
        """``n`` observations of ``seconds`` (the records of one frame)."""
        self.counts[bisect.bisect_left(self.buckets, seconds)] += n
        self.sum += seconds * n
        self.count += n
        if self.samples is not None:
            self.samples.extend([seconds] * n)

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


FRAME_MAX_RECORDS = 1_000  # ticks of one venue:symbol in one Kafka message at most
FRAME_MAX_BYTES = 512 * 1024  # and this many bytes of JSON at most (a frame over it is split; one record never is)


class Frame(NamedTuple):
    """Consecutive records of one topic and key, published as one Kafka message (a JSON array)."""

    topic: str
    key: bytes
    records: list[Record]


def frames_of(batch: list[Record], topic_of: Mapping[type, str], key_of: Callable[[Record], bytes],
              max_records: int = FRAME_MAX_RECORDS) -> list[Frame]:
    """``batch`` cut into frames: the records of each (topic, key) in their order, at most ``max_records`` each.

    Frames come in the order of their first record; records of different keys are in different partitions (or
    at least in no order a consumer relies on), so only the order within a key is kept, and it is.
    """
    groups: dict[tuple[type, str, str], list[Record]] = {}
    for r in batch:
        where = (type(r), r.venue, r.symbol)
        rows = groups.get(where)
        if rows is None:
            rows = groups[where] = []
        rows.append(r)
    frames: list[Frame] = []
    for (kind, _, _), rows in groups.items():
        topic, key = topic_of[kind], key_of(rows[0])
        if len(rows) <= max_records:
            frames.append(Frame(topic, key, rows))
        else:
            frames += [Frame(topic, key, rows[i:i + max_records]) for i in range(0, len(rows), max_records)]
    return frames


class KafkaPublisher:
    """Drains a :class:`DropQueue` into Kafka, one message per :class:`Frame`; counts records per venue."""

    def __init__(
        self, bootstrap: str, stats: Mapping[str, VenueStats], latency: LatencyHistogram,
        extra_config: Mapping[str, Any] | None = None, clock: Callable[[], int] = time.time_ns,
        topics: Mapping[str, str] | None = None, frame_max: int = FRAME_MAX_RECORDS,
    ) -> None:
        self._producer = Producer(producer_config(bootstrap, extra_config))
        names = {**{t.__name__: name for t, name in TOPIC_OF.items()}, **(topics or {})}
        self._topic_of = {t: names[t.__name__] for t in TOPIC_OF}  # record type -> topic (tests rename them)
        self._stats = stats
        self.latency = latency
        self._clock = clock
        self._encode = msgspec.json.Encoder().encode
        self._keys: dict[tuple[str, str], bytes] = {}
        self.frame_max = frame_max
        self.errors = 0  # records whose delivery failed
        self.in_flight = 0  # records handed to librdkafka and not yet acknowledged or failed
        self.acked = 0  # records the broker acknowledged
        self.messages = 0  # Kafka messages (frames) produced

    def _key(self, r: Record) -> bytes:
        k = (r.venue, r.symbol)
        key = self._keys.get(k)
        if key is None:
            key = self._keys[k] = f"{r.venue}:{r.symbol}".encode()
        return key

    def _delivered(self, count: int, err: KafkaError | None, msg: Message) -> None:
        """Delivery report of one frame of ``count`` records. Its Kafka timestamp is the receipt time of its
        oldest record, so the latency observed (for every record of the frame) is an upper bound for each."""
        self.in_flight -= count
        if err is not None:
            self.errors += count
            _ratelimited.warning("delivery", time.monotonic(), "delivery of %d records to %s failed: %s", count,
                                 msg.topic(), err)
            return
        self.acked += count
        self.latency.observe((self._clock() // 1_000_000 - msg.timestamp()[1]) / 1e3, count)

    def publish(self, batch: list[Record]) -> None:
        """Hand ``batch`` to librdkafka as frames; raises ``BufferError`` when its queue is full, with ``batch``
        cut down to the records not handed over (each key's records still in order)."""
        produce, encode, delivered = self._producer.produce, self._encode, self._delivered
        frames = frames_of(batch, self._topic_of, self._key, self.frame_max)
        for i, frame in enumerate(frames):
            stats = self._stats[frame.records[0].venue]  # one key, so one venue
            handed = 0  # records of this frame handed over
            try:
                for records, value in self._parts(frame.records, encode(frame.records)):
                    produce(frame.topic, value, frame.key, timestamp=records[0].ts_recv // 1_000_000,
                            on_delivery=partial(delivered, len(records)))
                    handed += len(records)
                    self.in_flight += len(records)
                    self.messages += 1
                    stats.published += len(records)
            except BufferError:
                batch[:] = frame.records[handed:] + [r for f in frames[i + 1:] for r in f.records]
                raise
        self._producer.poll(0)

    def _parts(self, records: list[Record], value: bytes) -> list[tuple[list[Record], bytes]]:
        """``records`` with their JSON ``value``, split in halves until each part is under FRAME_MAX_BYTES."""
        if len(value) <= FRAME_MAX_BYTES or len(records) == 1:
            return [(records, value)]
        half = len(records) // 2
        first, second = records[:half], records[half:]
        return self._parts(first, self._encode(first)) + self._parts(second, self._encode(second))

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

    async def _serve_deliveries(self, period_s: float = 0.002) -> None:
        """Serve delivery reports until cancelled (also while the sockets shut down)."""
        poll = self._producer.poll
        while True:
            poll(0)
            await asyncio.sleep(period_s)

    def warm_up(self, timeout: float = 10.0) -> bool:
        """Fetch the topics' metadata (and so connect to their leaders) before the first record, so that the first
        ticks do not wait for it; False (logged) if the broker did not answer in time (records then wait)."""
        deadline = time.monotonic() + timeout
        try:
            for topic in self._topic_of.values():
                self._producer.list_topics(topic, timeout=max(0.1, deadline - time.monotonic()))
        except KafkaException as e:
            logger.warning("Kafka metadata not available yet (%s): the first records wait for it", e)
            return False
        return True

    def flush(self, timeout: float = 10.0) -> int:
        """Wait for outstanding deliveries; returns how many are still undelivered."""
        remaining = int(self._producer.flush(timeout))
        if remaining:
            raise ExchangeError(f"{remaining} messages not delivered to Kafka within {timeout}s")
        return remaining


async def _wake_on(stop: asyncio.Event, queue: DropQueue) -> None:
    await stop.wait()
    queue.wake()
