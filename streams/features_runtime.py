"""The features agent's loop over Faust: records in, bars and signals out, acks only behind durable checkpoints.

The same ordering as the book worker (docs/streams.md): outputs are handed to the producer while a record is
handled; a group's checkpoint first flushes the producer, then writes the group's whole state (engines, detectors,
stream clocks and positions, records not yet fed) to the checkpoint table and awaits the changelog write; only
then are the records it covers acked, so the committed offsets never pass a record whose effect could be lost.

Groups are restored only in ``on_rebalance_complete``, which Faust sends once table recovery of the current
assignment is complete; a record of a group that is not restored (left in a buffer from before a rebalance) is
ignored, never used to restore early.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from faust.streams import _current_event  # the context the RocksDB store reads a write's partition from
from faust.types import TP, EventT

from streams.batching import BatchMessage, records_of
from streams.errors import StreamsError
from streams.features_group import Group, GroupKeeper, Output, compress_checkpoint
from streams.features_web import FeatureMetrics
from streams.output import OutputSink
from streams.recovery import recovered_partitions
from streams.runtime import OneWriteInFlight

logger = logging.getLogger(__name__)

GROUP_PREFIX = b"group/"


def group_key(number: int) -> bytes:
    return b"%s%d" % (GROUP_PREFIX, number)


class GroupStore(Protocol):
    """Where group checkpoints live: read at assignment, written at commit boundaries."""

    def recovered(self, numbers: set[int]) -> set[int]:
        """Those of ``numbers`` whose checkpoint can be read now (its changelog recovered)."""

    def load(self, number: int) -> bytes | None: ...

    def write(self, number: int, blob: bytes) -> Awaitable[object]: ...


class _Message:
    def __init__(self, partition: int) -> None:
        self.partition = partition


class _PartitionContext:
    """Stands for an event of ``partition`` while the RocksDB store writes: the store reads only
    ``current_event().message.partition`` to pick its database (a timer may checkpoint a group that had no
    event since it was restored)."""

    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


class TableGroupStore:
    """:class:`GroupStore` over a Faust table (``store="rocksdb://"``, raw bytes), one key per group, written
    to the changelog partition of the group's number; ``write`` resolves once the broker acknowledged it."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def recovered(self, numbers: set[int]) -> set[int]:
        return recovered_partitions(self.table, numbers)

    def load(self, number: int) -> bytes | None:
        value = self.table.data.get(group_key(number))
        return None if value is None else bytes(value)

    def write(self, number: int, blob: bytes) -> Awaitable[object]:
        key = group_key(number)
        context = _PartitionContext(number)
        token = _current_event.set(weakref.ref(context))  # type: ignore[arg-type]
        try:
            self.table.data[key] = blob
        finally:
            _current_event.reset(token)
        return asyncio.ensure_future(self.table.send_changelog(number, key, blob))


class MemoryGroupStore:
    """The in-memory twin of :class:`TableGroupStore` (unit tests)."""

    def __init__(self) -> None:
        self.durable: dict[int, bytes] = {}

    def recovered(self, numbers: set[int]) -> set[int]:
        return set(numbers)

    def load(self, number: int) -> bytes | None:
        return self.durable.get(number)

    def write(self, number: int, blob: bytes) -> Awaitable[object]:
        self.durable[number] = blob
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def _no_floors(streams: list[TP]) -> dict[TP, int]:
    return {}


def _nothing() -> None:
    pass


class FeaturesRuntime(OneWriteInFlight):
    """State shared by the agent, the timers, the rebalance hooks and the web views of one features worker."""

    def __init__(self, app: Any, keeper: GroupKeeper, store: GroupStore, sink: OutputSink, metrics: FeatureMetrics,
                 commit_interval_s: float, idle_s: float, worker: str = "features", finish_wait_s: float = 0.25
                 ) -> None:
        self.app = app
        self.keeper = keeper
        self.store = store
        self.sink = sink
        self.metrics = metrics
        self.commit_interval_s = commit_interval_s
        self.idle_s = idle_s
        self.finish_wait_ns = int(finish_wait_s * 1e9)  # longest wait of a closed bar's features for other groups
        self.worker = worker
        self.pending: dict[int, deque[EventT]] = {}  # handled, not yet acked, per group
        self.last_checkpoint: dict[int, float] = {}
        self.last_record: dict[int, float] = {}
        self.floors: dict[TP, int] = {}  # first offset of streams (log start) read at restore
        self.ready = False
        self.on_ready: Callable[[], None] | None = None  # called each time every group is restored
        self.fatal: BaseException | None = None
        self.stale = 0  # records of groups not restored (buffered from before a rebalance), ignored
        self.rebalances = 0  # revocations and assignments seen: a restore spanning one is void
        self.on_bars: Callable[[], None] = _nothing  # called after bars closed (the live stream wakes its clients)
        # first offsets of streams (the log start, after retention); the worker sets a broker reader
        self.read_floors: Callable[[list[TP]], Awaitable[dict[TP, int]]] = _no_floors
        metrics.watch(keeper, self.lag, lambda: self.ready)

    # ------------------------------------------------------------------ the agent
    async def consume(self, stream: Any) -> None:
        async for event in stream.noack().events():
            try:
                self.on_event(event)
            except StreamsError as e:
                await self.die(e)
                return

    def on_event(self, event: EventT) -> None:
        """One record, or a batch of records of one stream (:mod:`streams.batching`): handled in order, then
        pending until a checkpoint covers the last of them."""
        message = event.message
        number = message.partition
        records = records_of(message)
        if number not in self.keeper.groups:
            self.stale += len(records)
            return
        caught_up = self.caught_up(number)
        handle = self.keeper.handle
        event_time = self.keeper.event_time(number)
        self._observe_arrival(message, records[0])
        for record in records:
            started = time.perf_counter()
            closed = self.keeper.tally.bars_closed
            outputs = handle(number, record.topic, record.offset, record.key, record.value, caught_up, time.time_ns())
            self._send(outputs, started, closed)
        self.pending.setdefault(number, deque()).append(event)
        self.finish_due()
        now = time.monotonic()
        if self.keeper.event_time(number) != event_time:  # records behind the group's time leave it silent
            self.last_record[number] = now
        if (now - self.last_checkpoint.get(number, 0.0) >= self.commit_interval_s
                and self.keeper.groups[number].closed_at is None):  # not while its features wait: soon after
            self.start_checkpoint(number)

    def _observe_arrival(self, message: Any, first: Any) -> None:
        """Kafka timestamp of the event's first record -> now (aiokafka's records carry ms, Faust's messages s)."""
        stamp = getattr(first, "timestamp", None)
        if stamp:
            seconds = stamp / 1000 if isinstance(message, BatchMessage) else stamp
            self.metrics.arrival_lag.observe(max(0.0, time.time() - seconds))

    def _send(self, outputs: list[Output], started: float, closed: int) -> None:
        if outputs:
            self.sink.send(outputs)
        if self.keeper.tally.bars_closed != closed:
            self.metrics.close_seconds.observe(time.perf_counter() - started)
            if self.keeper.last_recv:
                self.metrics.tick_to_signal.observe(max(0, time.time_ns() - self.keeper.last_recv) / 1e9)

    def finish_due(self) -> None:
        """The features of closed bars that need wait no longer (:meth:`GroupKeeper.finishing`)."""
        for number in self.keeper.finishing(time.time_ns(), self.finish_wait_ns):
            self.finish(number)

    def finish(self, number: int) -> None:
        """Group ``number``'s closed bars with every feature, to the producer; wakes the live streams."""
        started = time.perf_counter()
        outputs = self.keeper.finish(number)
        if outputs:
            self.sink.send(outputs)
            self.metrics.features_seconds.observe(time.perf_counter() - started)
            self.on_bars()

    def caught_up(self, number: int) -> Callable[[str], bool]:
        """Whether a stream of group ``number`` has been read to the broker's end offset (unknown: no). The end
        offsets are read once per check function (one per event): the same answer as reading them when the event
        arrived, for a fraction of the cost (a tick asks two or three times)."""
        consumer = self.app.consumer
        group = self.keeper.groups[number]
        ends: dict[str, int] = {}  # per topic: the end offset, or 0 when the log starts at or past it

        def check(topic: str) -> bool:
            end = ends.get(topic)
            if end is None:
                tp = TP(topic, number)
                high = consumer.highwater(tp)
                if high is None:
                    return False
                end = ends[topic] = 0 if self.floors.get(tp, 0) >= high else high
            return group.positions.get(topic, 0) >= end

        return check

    # ------------------------------------------------------------------ timers
    async def idle_tick(self) -> None:
        """Timer: close the bars of groups whose streams are all caught up and silent (quiet instruments)."""
        now = time.monotonic()
        for number in list(self.keeper.groups):
            silence = now - self.last_record.get(number, now)
            if silence < self.idle_s:
                continue
            started = time.perf_counter()
            closed = self.keeper.tally.bars_closed
            outputs = self.keeper.idle(number, self.caught_up(number), int(silence * 1e9), time.time_ns())
            if outputs:
                self.sink.send(outputs)
            if self.keeper.tally.bars_closed != closed:
                self.metrics.close_seconds.observe(time.perf_counter() - started)
                self.last_checkpoint[number] = 0.0  # make the new bars durable soon
        self.finish_due()

    async def checkpoint_due(self) -> None:
        """Timer: checkpoint groups that went quiet with records (or timer bars) not yet covered."""
        now = time.monotonic()
        for number in list(self.keeper.groups):
            if now - self.last_checkpoint.get(number, 0.0) >= self.commit_interval_s:
                self.start_checkpoint(number)

    # ------------------------------------------------------------------ checkpoints
    def start_checkpoint(self, number: int) -> None:
        """Snapshot the group now; flush outputs, write and ack in the background (one at a time)."""
        group = self.keeper.groups.get(number)
        if self.inflight is not None or group is None:
            return
        self.last_checkpoint[number] = time.monotonic()
        self.finish(number)  # the features of its closed bars go out before the state that follows them
        if group.positions == group.checkpointed and group.open_end == group.snapshot_end:
            self._ack_covered(number)  # nothing new: no record handled, no bar closed by the idle timer
            return
        snapshot, upto = group.snapshot(), dict(group.positions)
        group.snapshot_end = group.open_end
        self._run(self._complete(number, group, snapshot, upto))

    async def _complete(self, number: int, group: Group, snapshot: bytes, upto: dict[str, int]) -> None:
        started = time.perf_counter()
        blob = await asyncio.to_thread(compress_checkpoint, snapshot)  # off the loop: zlib releases the GIL
        await self.sink.flush()
        try:
            await self.store.write(number, blob)
        except Exception as e:
            raise StreamsError(f"checkpoint of group {number} not written: {e!r}") from e
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)
        self.metrics.checkpoint_bytes.observe(len(blob))
        if self.keeper.groups.get(number) is group:
            group.checkpointed = upto
            self._ack_covered(number)

    def _ack_covered(self, number: int) -> None:
        group = self.keeper.groups.get(number)
        pending = self.pending.get(number)
        if group is None or not pending:
            return
        upto = group.checkpointed
        while pending and pending[0].message.offset < upto.get(pending[0].message.topic, 0):
            pending.popleft().ack()

    async def checkpoint_all(self) -> None:
        """Graceful stop: a checkpoint of every group, so that the next owner replays nothing."""
        for number in list(self.keeper.groups):
            await self.settle()
            self.last_checkpoint[number] = 0.0
            self.start_checkpoint(number)
            await self.settle()

    # ------------------------------------------------------------------ rebalances
    async def on_revoked(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        self.ready = False
        self.rebalances += 1
        await self.settle()
        self.pending.clear()  # delivery restarts from the committed offsets; unacked records come again

    async def on_assigned(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        """Drop the groups this worker no longer has (restoring waits for table recovery)."""
        self.ready = False
        self.rebalances += 1
        mine = self._groups(args[0] if args else kwargs.get("assigned", ()))
        for number in set(self.keeper.groups) - mine:
            self.keeper.revoke(number)
            logger.info("group %d revoked", number, extra={"partition": number})
        self.pending.clear()

    async def on_rebalance_complete(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        """Faust sends this when a round of table recovery ends: restore the groups whose checkpoints are fully
        recovered (:mod:`streams.recovery`); the others wait for the next round, which signals again."""
        mine = self._groups(self.app.consumer.assignment())
        for number in set(self.keeper.groups) - mine:
            self.keeper.revoke(number)
        new = sorted(self.store.recovered(mine - set(self.keeper.groups)))
        if new:
            rebalances = self.rebalances
            streams = [TP(topic, n) for n in new for topic in self.keeper.types]
            floors = await self.read_floors(streams)
            if rebalances != self.rebalances:  # the assignment changed while we asked the broker
                return
            self.floors.update(floors)
            for number in new:
                blob = self.store.load(number)
                try:
                    group = self.keeper.assign(number, blob)
                except ValueError as e:
                    await self.die(StreamsError(str(e)))
                    return
                self.last_record[number] = time.monotonic() - self.keeper.quiet_run_ns(number) / 1e9
                logger.info("group %d %s: %d instruments", number, "restored" if blob else "started",
                            len(group.engine.instruments), extra={"partition": number})
        waiting = mine - set(self.keeper.groups)
        if waiting:
            logger.info("groups %s wait for a later round of table recovery", sorted(waiting))
        self.ready = not waiting
        if self.ready and self.on_ready is not None:
            self.on_ready()

    def _groups(self, tps: Iterable[TP]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic in self.keeper.types}

    def lag(self) -> dict[tuple[str, int], int]:
        """Per input stream of the assigned groups: end offset minus the next offset to handle."""
        consumer = self.app.consumer
        out = {}
        for number, group in list(self.keeper.groups.items()):
            for topic in self.keeper.types:
                tp = TP(topic, number)
                high = consumer.highwater(tp)
                if high is not None:
                    out[(topic, number)] = max(0, high - max(group.positions.get(topic, 0), self.floors.get(tp, 0)))
        return out

    async def die(self, error: BaseException) -> None:
        logger.critical("stopping the features worker: %s", error)
        self.fatal = error
        await self.app.crash(error)
