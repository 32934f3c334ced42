"""Kafka helpers of the streams tests: publish frames, read a topic to the end."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import Consumer, Producer, TopicPartition

from topics.codec import encode
from topics.records import MboFrame


def producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                     "partitioner": "murmur2_random", "message.max.bytes": 16 * 1024 * 1024})


def publish(bootstrap: str, topic: str, frames: Iterable[MboFrame], stamp: bool = False,
            rate: float | None = None) -> int:
    """Publish ``frames`` keyed by instrument_id; with ``stamp``, ts_sent is the wall clock; with ``rate``, paced at
    that many records per second. Returns the count."""
    prod = producer(bootstrap)
    n = records = 0
    started = time.monotonic()
    for frame in frames:
        if rate:
            ahead = records / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
            records += len(frame)
        if stamp:
            frame = MboFrame(**{f: getattr(frame, f) for f in frame.__struct_fields__ if f != "ts_sent"},
                             ts_sent=time.time_ns())
        prod.produce(topic, encode(frame), str(frame.instrument_id).encode())
        prod.poll(0)
        n += 1
    if prod.flush(30):
        raise RuntimeError("frames not delivered")
    return n


def publish_raw(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    prod = producer(bootstrap)
    for key, value in messages:
        prod.produce(topic, value, key)
    if prod.flush(30):
        raise RuntimeError("messages not delivered")


def read_all(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[tuple[int, int, bytes | None, bytes]]:
    """Every message of ``topic`` up to its end offsets now: (partition, offset, key, value), by partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.time_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        wanted = {p: end for p, end in ends.items() if end > 0}
        consumer.assign(parts)
        out: list[tuple[int, int, bytes | None, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while wanted and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=1.0):
                if msg.error():
                    continue
                partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                out.append((partition, offset, msg.key(), msg.value() or b""))
                if offset + 1 >= wanted.get(partition, 0):
                    wanted.pop(partition, None)
        if wanted:
            raise TimeoutError(f"{topic}: partitions {sorted(wanted)} not read to the end")
        out.sort(key=lambda m: (m[0], m[1]))
        return out
    finally:
        consumer.close()
