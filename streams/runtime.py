"""The book agent's loop and its checkpoints, over Faust: frames in, outputs out, acks only behind checkpoints.

Ordering that makes a kill -9 harmless (docs/streams.md explains it at length):

1. a frame's outputs are handed to the producer while the frame is handled;
2. a checkpoint of a partition first flushes the producer (every output handed over is acknowledged), then writes
   the changed books to the table and awaits the changelog writes (acknowledged by the broker);
3. only then are the frames it covers acked; Faust commits acked offsets on its commit timer.

So the committed offset never passes a frame whose book checkpoint or outputs could still be lost. The source
stream is consumed with ``noack()``: Faust's own commit-time producer flush is not relied on.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event  # the context the RocksDB store reads a write's partition from
from faust.types import TP, EventT

from streams import checkpoint as cp
from streams.batching import records_of
from streams.config import WorkerConfig
from streams.errors import StreamsError
from streams.keeper import CheckpointPlan, Keeper
from streams.metrics import Metrics
from streams.output import OutputSink
from streams.recovery import recovered_partitions

logger = logging.getLogger(__name__)

# A checkpoint step snapshots books until their entries reach this size (at least one book): the agent's loop
# stops for about a millisecond per 200 KB (an ESH4-sized book), and handles frames between two steps.
CHECKPOINT_STEP_BYTES = 128 * 1024


async def _no_offsets(partitions: list[int]) -> dict[int, int]:
    return {}


@contextmanager
def event_context(event: EventT) -> Any:
    """Make ``event`` the current event, as inside the agent, so that the RocksDB store writes to its partition."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class TableStore:
    """:class:`~streams.checkpoint.CheckpointStore` over a Faust table (``store="rocksdb://"``, raw bytes).

    A write goes to the partition's local RocksDB database and to the changelog partition of the same number; the
    returned awaitable resolves when the broker acknowledged every changelog message.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.events: dict[int, EventT] = {}  # last event seen per partition: the write context

    def note(self, partition: int, event: EventT) -> None:
        """``event`` is the latest of ``partition``: later writes of the partition happen in its context."""
        self.events[partition] = event

    def forget(self, partition: int) -> None:
        self.events.pop(partition, None)

    def recovered(self, partitions: set[int]) -> set[int]:
        """Those of ``partitions`` whose changelog Faust has read to the end (:mod:`streams.recovery`)."""
        return recovered_partitions(self.table, partitions)

    def load(self, partitions: set[int]) -> dict[int, cp.PartitionRestore]:
        return cp.parse_entries(((bytes(k), bytes(v)) for k, v in self.table.items()), partitions)

    def write(self, partition: int, entries: Mapping[bytes, bytes]) -> asyncio.Future[Any]:
        with event_context(self.events[partition]):
            for key, value in entries.items():
                self.table.data[key] = value
        return asyncio.gather(*(self.table.send_changelog(partition, k, v) for k, v in entries.items()))


class OneWriteInFlight:
    """One durable write (a checkpoint or a claim) in the background at a time; its failure stops the worker."""

    inflight: asyncio.Future[None] | None = None  # the write being made durable
    _dying: asyncio.Future[None] | None = None

    async def die(self, error: BaseException) -> None:
        raise NotImplementedError

    def _run(self, work: Coroutine[Any, Any, None]) -> None:
        self.inflight = asyncio.ensure_future(work)
        self.inflight.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[None]) -> None:
        self.inflight = None
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            assert error is not None
            self._dying = asyncio.ensure_future(self.die(error))

    async def settle(self) -> None:
        """Wait until no write is in flight (its failure is handled by :meth:`die`)."""
        while self.inflight is not None:
            await asyncio.wait([self.inflight])


class Runtime(OneWriteInFlight):
    """State shared by the agent, the timers, the rebalance hooks and the web views of one worker."""

    def __init__(self, app: Any, config: WorkerConfig, keeper: Keeper, store: cp.CheckpointStore, sink: OutputSink,
                 metrics: Metrics) -> None:
        self.app = app
        self.config = config
        self.keeper = keeper
        self.store = store
        self.sink = sink
        self.metrics = metrics
        self.pending: dict[int, deque[EventT]] = {}  # handled, not yet acked, per partition
        self.last_checkpoint: dict[int, float] = {}
        self.ready = False
        self.on_ready: Callable[[], None] | None = None  # called each time every partition is restored
        self.rebalances = 0  # revocations and assignments seen: a restore spanning one is void
        self.fatal: BaseException | None = None
        # the group's committed offsets of some partitions (for the lag before the first frame); none by default
        self.committed: Callable[[list[int]], Awaitable[dict[int, int]]] = _no_offsets
        metrics.watch(keeper, self.lag, lambda: self.ready)

    # ------------------------------------------------------------------ the agent

    async def consume(self, stream: Any) -> None:
        """The agent's body: every frame of the assigned partitions, in order, acks left to checkpoints."""
        async for event in stream.noack().events():
            try:
                await self.on_event(event)
            except StreamsError as e:
                await self.die(e)
                return

    async def on_event(self, event: EventT) -> None:
        message = event.message
        partition, offset = message.partition, message.offset
        if partition not in self.keeper.partitions and not await self.restore({partition}):
            # its checkpoints are not recovered yet: leave the frame unacked; Faust seeks the partition back to
            # its committed offset once the table recovery completes, and the frame comes again
            logger.info("frame of a partition not restored yet left for redelivery", extra={
                "topic": message.topic, "partition": partition, "offset": offset})
            return
        self.store.note(partition, event)
        if not self.keeper.partitions[partition].claimed:
            await self.claim(partition)
            if partition not in self.keeper.partitions:  # revoked meanwhile: the new owner gets this frame
                return
        handle, send = self.keeper.handle, self.sink.send
        for record in records_of(message):  # one frame, or a batch of frames (streams.batching)
            started = time.perf_counter()
            outputs = handle(partition, record.offset, record.key, record.value, time.time_ns(), time.monotonic())
            if outputs:
                send(outputs)
            self._observe(started, outputs)
        self.pending.setdefault(partition, deque()).append(event)
        if time.monotonic() - self.last_checkpoint.get(partition, 0.0) >= self.config.commit_interval_s:
            self.start_checkpoint(partition)

    def _observe(self, started: float, outputs: list[Any]) -> None:
        metrics = self.metrics
        metrics.apply_seconds.observe(time.perf_counter() - started)
        times = self.keeper.last_times
        if not outputs or times is None:
            return
        now_ns = time.time_ns()
        ts_recv, ts_sent = times
        metrics.recv_to_publish.observe(max(0, now_ns - ts_recv) / 1e9)
        if ts_sent:
            metrics.sent_to_publish.observe(max(0, now_ns - ts_sent) / 1e9)

    async def claim(self, partition: int) -> None:
        """Make the partition marker durable before the first output of a partition never processed before."""
        await self.settle()
        plan = self.keeper.plan_claim(partition, time.time_ns())
        if plan is None:
            return
        self._run(self._write(plan))
        await self.settle()
        state = self.keeper.partitions.get(partition)
        if state is plan.state and not state.claimed:
            raise StreamsError(f"the marker of partition {partition} was not written; no output before it is")

    # ------------------------------------------------------------------ checkpoints

    def start_checkpoint(self, partition: int) -> None:
        """Checkpoint the changed books of ``partition`` in the background, so that the agent goes on while the
        broker acknowledges: a round of steps, each of which snapshots books up to ``CHECKPOINT_STEP_BYTES``
        (oldest change first), flushes the outputs, writes the checkpoint and acks the frames it covers. Frames
        are handled between two steps, so the agent never stops for more than one step's snapshot. The round
        ends once every book changed when it started is written. One checkpoint is in flight at a time."""
        if self.inflight is not None:
            return
        self.last_checkpoint[partition] = time.monotonic()
        state = self.keeper.partitions.get(partition)
        round_end = state.last_offset if state is not None else -1
        plan = self.keeper.plan_checkpoint(partition, time.time_ns(), CHECKPOINT_STEP_BYTES)
        if plan is None:
            self._ack_covered(partition)
        else:
            self._run(self._complete(plan, round_end))

    async def _complete(self, plan: CheckpointPlan, round_end: int) -> None:
        while True:
            started = time.perf_counter()
            await self.sink.flush()
            await self._write(plan)
            self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)
            self.metrics.checkpoint_bytes.observe(sum(len(v) for v in plan.entries.values()))
            self._ack_covered(plan.partition)
            if not plan.more or self.keeper.partitions.get(plan.partition) is not plan.state:
                return
            await asyncio.sleep(0)  # the frames that came meanwhile first
            oldest = self.keeper.oldest_change(plan.partition)
            if oldest is None or oldest > round_end:
                return
            next_plan = self.keeper.plan_checkpoint(plan.partition, time.time_ns(), CHECKPOINT_STEP_BYTES)
            if next_plan is None:
                return
            plan = next_plan

    async def checkpoint(self, partition: int) -> None:
        """Checkpoint ``partition`` and wait until it is durable and its frames acked."""
        await self.settle()
        self.start_checkpoint(partition)
        await self.settle()

    async def _write(self, plan: CheckpointPlan) -> None:
        try:
            await self.store.write(plan.partition, plan.entries)
        except Exception as e:
            raise StreamsError(f"checkpoint of partition {plan.partition} not written: {e!r}") from e
        self.keeper.completed(plan)

    def _ack_covered(self, partition: int) -> None:
        """Ack the handled frames of ``partition`` that a durable checkpoint covers (Faust may commit them)."""
        state = self.keeper.partitions.get(partition)
        pending = self.pending.get(partition)
        if state is None or not pending:
            return
        upto = state.checkpointed
        while pending and pending[0].message.offset <= upto:
            pending.popleft().ack()

    async def checkpoint_due(self) -> None:
        """Timer: checkpoint partitions that went quiet with frames not yet covered."""
        now = time.monotonic()
        for partition in list(self.keeper.partitions):
            idle = now - self.last_checkpoint.get(partition, 0.0) >= self.config.commit_interval_s
            if idle and self.pending.get(partition):
                self.start_checkpoint(partition)

    async def checkpoint_all(self) -> None:
        """Graceful stop: the latest MBP-10 of every changed book, then a checkpoint of every partition so that
        the next owner replays nothing."""
        outputs = self.keeper.due_mbp10(time.monotonic(), force=True)
        if outputs:
            self.sink.send(outputs)
        for partition in list(self.keeper.partitions):
            await self.checkpoint(partition)

    async def flush_mbp10(self) -> None:
        """Timer: MBP-10 snapshots of books that changed and then went quiet."""
        outputs = self.keeper.due_mbp10(time.monotonic())
        if outputs:
            self.sink.send(outputs)

    # ------------------------------------------------------------------ rebalances

    async def on_revoked(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        """Signal: the group rebalances. No checkpoint may still be in flight when the partitions move."""
        self.ready = False
        self.rebalances += 1
        await self.settle()
        self.pending.clear()  # offsets restart from the committed ones; unacked frames come again

    async def on_assigned(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        """Signal (argument: the new assignment): drop the books of partitions this worker no longer has."""
        self.ready = False
        self.rebalances += 1
        mine = self._partitions(args[0] if args else kwargs.get("assigned", ()))
        for partition in set(self.keeper.partitions) - mine:
            self.keeper.revoke(partition)
            self.store.forget(partition)
            logger.info("partition %d revoked", partition, extra={"topic": self.config.topics.frames,
                                                                    "partition": partition})
        self.pending.clear()

    async def on_rebalance_complete(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        """Signal: a round of table recovery completed. Restore the books of newly assigned partitions whose
        checkpoints are fully recovered; report ready once every assigned partition is restored. Partitions
        not recovered yet wait for the next round, which signals again."""
        mine = self._partitions(self.app.consumer.assignment())
        new = mine - set(self.keeper.partitions)
        recovered = self.store.recovered(new)
        if recovered and not await self.restore(recovered):
            return  # the group rebalanced meanwhile: the next round restores them
        if new - recovered:
            logger.info("partitions %s wait for a later round of table recovery", sorted(new - recovered),
                        extra={"topic": self.config.topics.frames})
        self.ready = mine <= set(self.keeper.partitions)
        if self.ready and self.on_ready is not None:
            self.on_ready()

    async def restore(self, partitions: set[int]) -> bool:
        """Take ``partitions`` over from their checkpoints; False (nothing taken) unless every one of them is
        recovered and no rebalance happened meanwhile."""
        assigned = self._partitions(self.app.consumer.assignment())
        if not partitions <= assigned or self.store.recovered(partitions) != partitions:
            return False
        rebalances = self.rebalances
        tps = [TP(self.config.topics.frames, p) for p in sorted(partitions)]
        ends = await self.app.consumer.highwaters(*tps)
        committed = await self.committed(sorted(partitions))
        if rebalances != self.rebalances:  # the assignment changed while we asked the broker
            return False
        restored = self.store.load(partitions)
        for tp in tps:
            self.keeper.assign(tp.partition, restored[tp.partition], ends.get(tp) or 0,
                               committed.get(tp.partition, 0))
        return True

    def _partitions(self, tps: Iterable[TP]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == self.config.topics.frames}

    def lag(self) -> dict[int, int]:
        """Per assigned partition: the broker's end offset minus the next offset to handle."""
        consumer = self.app.consumer
        out = {}
        for partition, state in self.keeper.partitions.items():
            high = consumer.highwater(TP(self.config.topics.frames, partition))
            if high is not None:
                out[partition] = max(0, high - state.position)
        return out

    async def die(self, error: BaseException) -> None:
        """An output or checkpoint could not be made durable: stop the worker, commit nothing more."""
        logger.critical("stopping the worker: %s", error)
        self.fatal = error
        await self.app.crash(error)
