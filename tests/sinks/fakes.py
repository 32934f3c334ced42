"""In-memory stand-ins for the confluent-kafka consumer and the dead-letter producer, for the sink loop's tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from confluent_kafka import TopicPartition

from sinks.store import MemoryStore, RowStore


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes | None, key: bytes | None = None):
        self._t, self._p, self._o, self._v, self._k = topic, partition, offset, value, key

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes | None:
        return self._k

    def error(self) -> None:
        return None


@dataclass
class FakeConsumer:
    """Partitions of messages; consume() round-robins over the unpaused ones; commits are recorded with the
    number of rows the store held at that moment (``on_commit`` reads it)."""

    partitions: dict[tuple[str, int], list[bytes]]
    on_commit: Callable[[], int] = lambda: 0
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    paused: set[tuple[str, int]] = field(default_factory=set)
    commits: list[tuple[dict[tuple[str, int], int], int]] = field(default_factory=list)
    pause_calls: int = 0
    resume_calls: int = 0
    resume_empty_polls: int = 0  # consume() calls that return nothing after a resume (librdkafka fetches anew)
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, topic: str, partition: int, values: Iterable[bytes]) -> None:
        with self.lock:
            self.partitions.setdefault((topic, partition), []).extend(values)

    def list_topics(self, timeout: float = 0) -> Any:
        topics = {t for t, _ in self.partitions} | {"dead"}
        return SimpleNamespace(topics={t: SimpleNamespace(error=None) for t in topics})

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self._on_assign = on_assign
        self._assigned = False
        self._refetching = 0

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        if not self._assigned:
            self._assigned = True
            self._on_assign(self, [TopicPartition(t, p) for t, p in sorted(self.partitions)])
        out: list[FakeMessage] = []
        with self.lock:
            if self._refetching:
                self._refetching -= 1
                time.sleep(min(timeout, 0.005))
                return out
            for tp, values in sorted(self.partitions.items()):
                if tp in self.paused:
                    continue
                pos = self.positions.get(tp, 0)
                take = values[pos:pos + num_messages - len(out)]
                out += [FakeMessage(tp[0], tp[1], pos + i, v) for i, v in enumerate(take)]
                self.positions[tp] = pos + len(take)
        if not out:
            time.sleep(min(timeout, 0.005))
        return out

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.pause_calls += 1
        self.paused |= {(p.topic, p.partition) for p in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.resume_calls += 1
        self.paused -= {(p.topic, p.partition) for p in partitions}
        self._refetching = self.resume_empty_polls

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.commits.append(({(o.topic, o.partition): o.offset for o in offsets}, self.on_commit()))

    def committed_offsets(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for offsets, _ in self.commits:
            out.update(offsets)
        return out

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return 0, len(self.partitions.get((tp.topic, tp.partition), []))

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeDeadLetters:
    sent: list[tuple[str, int, int, str]] = field(default_factory=list)

    def send(self, msg: Any, reason: str) -> None:
        self.sent.append((msg.topic(), msg.partition(), msg.offset(), reason))

    def flush(self, timeout_s: float = 0) -> None:
        pass

    def close(self) -> None:
        pass


class GatedStore:
    """A MemoryStore whose writes wait until ``gate`` is set: a database that has stalled."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def write_batch(self, rows: Any) -> dict[str, int]:
        self.waiting.set()
        self.gate.wait()
        return self.inner.write_batch(rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def as_store(store: Any) -> Callable[[], RowStore]:
    """A connect function that "reconnects" to ``store`` (a closed MemoryStore opens again)."""

    def connect() -> RowStore:
        getattr(store, "inner", store).closed = False
        return store

    return connect
