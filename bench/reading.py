"""Reading topics for latency figures: take what has arrived as soon as it has arrived; the broker floor.

``Consumer.consume(n, timeout)`` waits until it has ``n`` messages *or* the timeout has passed, so a reader that
asks for large batches with a timeout holds every message of a quiet stretch for up to that timeout: its read
times, and every latency computed from them, come out late by up to the timeout.
"""

from __future__ import annotations

import os
import time
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

BATCH = 10_000


def arrived(consumer: Any, wait_s: float) -> list[Any]:
    """The messages already fetched (up to ``BATCH``), or else the next one within ``wait_s`` (or none)."""
    batch = consumer.consume(BATCH, timeout=0)
    if batch:
        return list(batch)
    one = consumer.poll(wait_s)
    return [one] if one is not None else []


def consumer_at_end(bootstrap: str, topics: list[str], name: str, fetch_wait_ms: int = 5) -> Any:
    """A consumer of every partition of ``topics`` from its end, its assignment settled (one short poll); its
    group is ``bench-<name>-<pid>`` and commits nothing."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{name}-{os.getpid()}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": fetch_wait_ms, "fetch.min.bytes": 1})
    parts = []
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=10)
        parts += [TopicPartition(topic, p, OFFSET_END) for p in meta.topics[topic].partitions]
    consumer.assign(parts)
    consumer.consume(1, timeout=1.0)
    return consumer


def read_ages(bootstrap: str, topics: list[str], seconds: float, warmup: float, ready: Any, out: Any) -> None:
    """Child process (the benches' ``--broker-floor``): a plain librdkafka reader of ``topics`` from their end; the
    age of every message read after ``warmup`` s, until ``seconds`` (read time minus its Kafka timestamp, ms), sent
    on ``out``: what the broker path alone costs on this machine under the bench's load, before any worker."""
    consumer = consumer_at_end(bootstrap, topics, "floor")
    ready.set()
    ages: list[float] = []
    start = time.time() + warmup
    stop = time.time() + seconds
    while time.time() < stop:
        for msg in arrived(consumer, 0.05):
            now_ms = time.time() * 1000.0
            if not msg.error() and now_ms >= start * 1000.0:
                ages.append(now_ms - msg.timestamp()[1])
    consumer.close()
    out.send(ages)


def floor_figures(ages: list[float]) -> dict[str, float]:
    """p50 / p90 / p99 of a floor reader's ages, ms (NaN when there are none)."""
    ordered = sorted(ages)
    return {f"p{q}": round(ordered[min(len(ordered) - 1, len(ordered) * q // 100)], 1) if ordered else float("nan")
            for q in (50, 90, 99)}
