"""An in-memory twin of Kafka and Faust around :class:`streams.runtime.Runtime`, to test checkpoints and crashes.

The twin keeps what a real broker keeps across a worker crash: the frames log per partition, the committed offsets
(advanced over contiguous acks, as Faust does), the durable checkpoint entries and the delivered outputs. A crash
throws away everything else: the runtime, its books, outputs handed to the producer but not yet delivered (a
random prefix of them gets through), checkpoint writes not yet acknowledged (a random prefix of the entries lands).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faust.types import TP

from streams.checkpoint import MemoryCheckpointStore
from streams.config import WorkerConfig
from streams.keeper import Keeper, KeeperConfig
from streams.metrics import Metrics
from streams.output import MemorySink
from streams.publisher import Output, OutputTopics
from streams.runtime import Runtime
from topics.codec import encode
from topics.records import MboFrame

TOPICS = OutputTopics()


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass
class Event:
    message: Message
    broker: Broker

    def ack(self) -> bool:
        self.broker.acked.setdefault(self.message.partition, set()).add(self.message.offset)
        return True


@dataclass
class Broker:
    """Frames per partition, what is produced so far, committed offsets, delivered outputs, durable checkpoints."""

    logs: dict[int, list[tuple[bytes | None, bytes | None]]]
    produced: dict[int, int] = field(default_factory=dict)  # frames visible per partition
    committed: dict[int, int] = field(default_factory=dict)
    acked: dict[int, set[int]] = field(default_factory=dict)
    delivered: list[Output] = field(default_factory=list)
    store: MemoryCheckpointStore = field(default_factory=lambda: MemoryCheckpointStore(hold=True))

    def commit(self) -> None:
        """Faust's commit timer: advance each partition over contiguous acked offsets."""
        for partition, acked in self.acked.items():
            offset = self.committed.get(partition, 0)
            while offset in acked:
                offset += 1
            self.committed[partition] = offset

    def end(self, partition: int) -> int:
        return self.produced.get(partition, len(self.logs[partition]))


class Consumer:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def assignment(self) -> set[TP]:
        return {TP(TOPICS.frames, p) for p in self.broker.logs}

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.broker.end(tp.partition) for tp in tps}

    def highwater(self, tp: TP) -> int:
        return self.broker.end(tp.partition)


@dataclass
class App:
    consumer: Consumer
    crashed: BaseException | None = None

    async def crash(self, error: BaseException) -> None:
        self.crashed = error


Log = list[tuple[bytes | None, bytes | None]]


def frame_logs(frames_by_partition: Mapping[int, Sequence[MboFrame]]) -> dict[int, Log]:
    return {p: [(str(f.instrument_id).encode(), encode(f)) for f in fs] for p, fs in frames_by_partition.items()}


def new_runtime(broker: Broker, commit_interval_s: float = 1e12) -> tuple[Runtime, MemorySink]:
    config = WorkerConfig(app_id="twin", bootstrap="127.0.0.1:1", web_port=1, workdir=Path("/nonexistent"),
                          partitions=len(broker.logs), commit_interval_s=commit_interval_s, mbp10_interval_s=1e12)
    keeper = Keeper(KeeperConfig(topics=TOPICS, mbp10_interval_s=1e12))
    sink = MemorySink()
    runtime = Runtime(App(Consumer(broker)), config, keeper, broker.store, sink, Metrics())
    return runtime, sink


async def start(broker: Broker) -> tuple[Runtime, MemorySink]:
    runtime, sink = new_runtime(broker)
    await runtime.on_rebalance_complete(None)
    return runtime, sink


class Crash(Exception):
    """The simulated kill -9."""


async def step(runtime: Runtime, event: Event, rng: random.Random, crash_now: bool) -> bool:
    """Handle one frame; True when it completed. While a checkpoint (or claim) write is in flight, Faust's commit
    timer may fire; with ``crash_now``, after up to two writes have landed, a random prefix of the next write's
    entries becomes durable and the worker dies (False)."""
    task = asyncio.ensure_future(runtime.on_event(event))  # type: ignore[arg-type]
    await _spin()
    store = event.broker.store
    writes_before_crash = rng.randint(0, 2) if crash_now else 0  # a checkpoint may take several writes (steps)
    while not task.done() or runtime.inflight is not None:
        if rng.random() < 0.5:  # Faust's commit timer fires while the checkpoint is in flight
            event.broker.commit()
        if crash_now and writes_before_crash == 0:
            _land_prefix(store, rng)
            for pending in (task, runtime.inflight):
                if pending is not None:
                    pending.cancel()
            await asyncio.gather(task, *(t for t in [runtime.inflight] if t), return_exceptions=True)
            return False
        store.release()
        writes_before_crash -= 1
        await _spin()
    task.result()
    return True


async def _spin() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _land_prefix(store: MemoryCheckpointStore, rng: random.Random) -> None:
    pending = [item for entries, _ in store._pending for item in entries.items()]
    store.durable.update(pending[: rng.randint(0, len(pending))])
    store._pending.clear()


async def run_until(broker: Broker, rng: random.Random, crash_after: int | None) -> tuple[Runtime, bool]:
    """Run a fresh worker over every frame produced so far, from the committed offsets; checkpoint and commit at
    random points. With ``crash_after`` (frames handled), die there. Returns the runtime and whether it finished."""
    runtime, sink = await start(broker)
    positions = {p: broker.committed.get(p, 0) for p in broker.logs}
    handled, finished = 0, True
    while True:
        ready = [p for p in broker.logs if positions[p] < broker.end(p)]
        if not ready:
            break
        partition = rng.choice(ready)
        key, value = broker.logs[partition][positions[partition]]
        event = Event(Message(TOPICS.frames, partition, positions[partition], key, value), broker)
        crash_now = crash_after is not None and handled >= crash_after
        if rng.random() < (0.5 if crash_now else 0.08):  # the checkpoint interval ran out with this frame
            runtime.last_checkpoint[partition] = float("-inf")
        if not await step(runtime, event, rng, crash_now):
            finished = False
            break
        positions[partition] += 1
        handled += 1
        if rng.random() < 0.1:
            broker.commit()
        if crash_now:
            finished = False
            break
    if finished:
        await _finish(runtime, broker)
        broker.delivered.extend(sink.outputs)
    else:
        broker.delivered.extend(sink.outputs[: rng.randint(sink.flushed, len(sink.outputs))])
    return runtime, finished


async def _finish(runtime: Runtime, broker: Broker) -> None:
    task = asyncio.ensure_future(runtime.checkpoint_all())
    while not task.done():
        broker.store.release()
        await asyncio.sleep(0)
    task.result()
    broker.commit()


def runtime_books(runtime: Runtime) -> dict[int, Any]:
    return {t.book.instrument_id: t for t in runtime.keeper.books()}


class PartlyRecovered:
    """Mixin for an in-memory checkpoint store in the middle of a table recovery round: the ``pending``
    partitions (or partition groups) are not read yet."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: set[int] = set()

    def recovered(self, numbers: set[int]) -> set[int]:
        return set(numbers) - self.pending
