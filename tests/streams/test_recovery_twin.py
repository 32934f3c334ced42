"""Checkpoint, skip and crash logic on the in-memory twin: kill the worker anywhere, restart, compare.

Every run restarts from the committed offsets and the durable checkpoints only. Whatever the crash point (between
frames, or in the middle of a checkpoint write that lands partially), the final books equal an uninterrupted run,
and the delivered BBO stream, read by a consumer that drops repeats by sequence, is exactly the uninterrupted one,
with every repeat marked duplicate.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Mapping
from itertools import zip_longest
from typing import Any

import pytest

from streams import runtime as runtime_module
from streams.checkpoint import MemoryCheckpointStore, PartitionRestore
from streams.errors import StreamsError
from streams.keeper import Keeper, KeeperConfig
from streams.publisher import Output
from tests.streams import twin
from tests.streams.checks import check_stream
from tests.streams.sessions import bbo_key, esh4_records, frames, renumbered
from topics.codec import decode
from topics.records import BboUpdate, BookTrade, MboFrame

pytestmark = pytest.mark.unit

SNAPSHOT = 8_725  # records of the ESH4 day's opening snapshot (one F_LAST event: one frame)


def session() -> dict[int, list[MboFrame]]:
    """Two instruments in two partitions: one from the snapshot on, one joining mid-session (unknown orders)."""
    records = esh4_records()
    return {0: frames(records[:SNAPSHOT + 5_000], 40),
            1: frames(renumbered(records[SNAPSHOT:SNAPSHOT + 6_000], 4242), 25)}


def shared_session() -> dict[int, list[MboFrame]]:
    """Three instruments in partition 0 (their records interleaved), one in partition 1."""
    records = esh4_records()
    day = records[:SNAPSHOT + 3_000]
    live = renumbered(records[SNAPSHOT:SNAPSHOT + 3_000], 5252)
    books = [frames(day, 40), frames(renumbered(day, 5151), 40), frames(live, 40)]
    mixed = [f for row in zip_longest(*books) for f in row if f is not None]  # one frame of each in turn
    return {0: mixed, 1: frames(renumbered(records[SNAPSHOT:SNAPSHOT + 4_000], 4242), 25)}


def uninterrupted(make: Any = session) -> tuple[twin.Broker, twin.Runtime]:
    broker = twin.Broker(twin.frame_logs(make()))
    runtime, finished = asyncio.run(twin.run_until(broker, random.Random(0), None))
    assert finished
    return broker, runtime


def outputs(broker: twin.Broker, topic: str) -> list[Output]:
    return [o for o in broker.delivered if o[0] == topic]


def trade_key(t: BookTrade) -> tuple[int, ...]:
    return (t.sequence, t.ts_recv, t.order_id, t.price, t.size)


def kill_anywhere(seed: int, make: Any) -> None:
    """Crash the worker four times at random points while the session streams, then run it to the end; the books
    and the delivered streams must equal an uninterrupted run's."""
    ref_broker, ref_runtime = uninterrupted(make)
    rng = random.Random(seed)
    broker = twin.Broker(twin.frame_logs(make()))
    total = {p: len(log) for p, log in broker.logs.items()}
    broker.produced = {p: n // 3 for p, n in total.items()}  # the session is still streaming
    for _ in range(4):
        asyncio.run(twin.run_until(broker, rng, crash_after=rng.randint(0, 120)))
        broker.produced = {p: min(n, broker.produced[p] + rng.randint(0, n // 4)) for p, n in total.items()}
    broker.produced = total
    runtime, finished = asyncio.run(twin.run_until(broker, rng, None))
    assert finished
    books = twin.runtime_books(runtime)
    ref_books = twin.runtime_books(ref_runtime)
    assert sorted(books) == sorted(ref_books)
    for inst, tracked in books.items():
        assert tracked.book.to_state() == ref_books[inst].book.to_state()
        assert tracked.state == ref_books[inst].state
    topics = twin.TOPICS
    check_stream(outputs(ref_broker, topics.bbo), outputs(broker, topics.bbo), bbo_key, BboUpdate)
    check_stream(outputs(ref_broker, topics.trades), outputs(broker, topics.trades), trade_key, BookTrade)
    assert broker.committed == total


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_kill_anywhere_same_books_no_gap(seed: int) -> None:
    kill_anywhere(seed, session)


@pytest.mark.parametrize("seed", [6, 7, 8, 9])
def test_kill_anywhere_with_books_checkpointed_one_per_step(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three books share a partition and each checkpoint step takes one of them: a crash between two steps (or
    inside one) leaves some books checkpointed further than others, and the restart still ends the same."""
    monkeypatch.setattr(runtime_module, "CHECKPOINT_STEP_BYTES", 1)
    kill_anywhere(seed, shared_session)


def test_a_crash_between_two_checkpoint_steps_loses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first step of a checkpoint lands and its frames are committed; the worker dies before the second: the
    books the second step would have written are replayed from their own checkpoints, to the same end."""
    monkeypatch.setattr(runtime_module, "CHECKPOINT_STEP_BYTES", 1)
    _, ref_runtime = uninterrupted(shared_session)
    broker = twin.Broker(twin.frame_logs(shared_session()))
    log = broker.logs[0]

    async def first_run() -> None:
        runtime, _ = await twin.start(broker)
        for offset in range(len(log) // 2):
            key, value = log[offset]
            event = twin.Event(twin.Message(twin.TOPICS.frames, 0, offset, key, value), broker)
            assert await twin.step(runtime, event, random.Random(0), crash_now=False)
        assert len(runtime.keeper.partitions[0].dirty) == 3
        runtime.start_checkpoint(0)
        while not broker.store._pending:
            await asyncio.sleep(0)
        broker.store.release()  # the first step lands...
        while runtime.keeper.partitions[0].checkpointed < 0 or not broker.store._pending:
            await asyncio.sleep(0)
        broker.commit()  # ...and its frames are committed; the second step's write never lands
        assert runtime.inflight is not None
        runtime.inflight.cancel()  # kill -9: the second step's write is lost
        broker.store._pending.clear()

    asyncio.run(first_run())
    assert 0 < broker.committed[0] < len(log) // 2
    runtime, finished = asyncio.run(twin.run_until(broker, random.Random(1), None))
    assert finished
    books, ref_books = twin.runtime_books(runtime), twin.runtime_books(ref_runtime)
    for inst, tracked in books.items():
        assert tracked.book.to_state() == ref_books[inst].book.to_state()


def test_on_ready_is_called_once_every_partition_is_restored() -> None:
    broker = twin.Broker(twin.frame_logs(session()))
    runtime, _ = twin.new_runtime(broker)
    calls: list[bool] = []
    runtime.on_ready = lambda: calls.append(runtime.ready)

    asyncio.run(runtime.on_rebalance_complete(None))

    assert calls == [True]


def test_a_stepped_plan_takes_the_oldest_change_first_and_commits_no_further_than_the_rest() -> None:
    # Arrange: three books of partition 0, changed first at different offsets
    keeper = Keeper(KeeperConfig(topics=twin.TOPICS))
    keeper.assign(0, PartitionRestore(), 0)
    log = twin.frame_logs(shared_session())[0]
    for offset, (key, value) in enumerate(log):
        keeper.handle(0, offset, key, value, 0, 0.0)
    first = dict(sorted(keeper.partitions[0].dirty.items(), key=lambda kv: kv[1]))
    assert len(first) == 3

    # Act
    plans = []
    while (plan := keeper.plan_checkpoint(0, 0, max_bytes=1)) is not None and len(plans) < 5:
        plans.append(plan)
        keeper.completed(plan)

    # Assert: one book per plan, oldest change first; each commits only up to the oldest change left out
    order = list(first.values())
    assert [len(p.entries) for p in plans] == [2, 2, 2]  # a book and the partition marker
    assert [p.upto for p in plans] == [order[1] - 1, order[2] - 1, len(log) - 1]
    assert [p.more for p in plans] == [True, True, False]
    assert keeper.oldest_change(0) is None


def test_uninterrupted_bbo_matches_a_plain_keeper() -> None:
    broker, _ = uninterrupted()
    keeper = Keeper(KeeperConfig(topics=twin.TOPICS))
    plain = []
    for partition, log in broker.logs.items():
        keeper.assign(partition, PartitionRestore(), 0)
        for offset, (key, value) in enumerate(log):
            plain += keeper.handle(partition, offset, key, value, 0, 0.0)
    got = sorted(bbo_key(decode(BboUpdate, v)) for t, _, v in broker.delivered if t == twin.TOPICS.bbo)
    assert got == sorted(bbo_key(decode(BboUpdate, v)) for t, _, v in plain if t == twin.TOPICS.bbo)
    assert not any(decode(BboUpdate, v).duplicate for t, _, v in broker.delivered if t == twin.TOPICS.bbo)


def test_frames_covered_by_a_checkpoint_are_skipped_after_restore() -> None:
    broker = twin.Broker(twin.frame_logs(session()))

    async def scenario() -> None:
        runtime, _ = await twin.start(broker)
        for offset in range(10):
            key, value = broker.logs[0][offset]
            event = twin.Event(twin.Message(twin.TOPICS.frames, 0, offset, key, value), broker)
            assert await twin.step(runtime, event, random.Random(0), crash_now=False)
        task = asyncio.ensure_future(runtime.checkpoint(0))
        while not task.done():
            broker.store.release()
            await asyncio.sleep(0)
        task.result()
        broker.commit()
        assert broker.committed[0] == 10
        broker.committed[0] = 4  # as if the commit had not gone through: frames 4..9 come again
        again, sink = await twin.start(broker)
        assert again.keeper.partitions[0].dup_until == len(broker.logs[0])
        for offset in range(4, 12):
            key, value = broker.logs[0][offset]
            event = twin.Event(twin.Message(twin.TOPICS.frames, 0, offset, key, value), broker)
            assert await twin.step(again, event, random.Random(0), crash_now=False)
        assert again.keeper.partitions[0].skipped == 6
        assert all(decode(BboUpdate, v).duplicate for t, _, v in sink.outputs if t == twin.TOPICS.bbo)

    asyncio.run(scenario())


def test_a_partition_never_processed_publishes_unmarked_outputs_after_its_claim() -> None:
    broker = twin.Broker(twin.frame_logs(session()))

    async def scenario() -> None:
        runtime, sink = await twin.start(broker)
        assert not runtime.keeper.partitions[0].claimed
        key, value = broker.logs[0][0]
        event = twin.Event(twin.Message(twin.TOPICS.frames, 0, 0, key, value), broker)
        assert await twin.step(runtime, event, random.Random(0), crash_now=False)
        assert b"partition/0" in broker.store.durable  # the claim is durable before any output
        assert runtime.keeper.partitions[0].claimed
        assert not any(decode(BboUpdate, v).duplicate for t, _, v in sink.outputs if t == twin.TOPICS.bbo)

    asyncio.run(scenario())


class FailingStore(MemoryCheckpointStore):
    """Claims go through; checkpoint writes fail (the changelog is unavailable)."""

    def write(self, partition: int, entries: Mapping[bytes, bytes]) -> Awaitable[object]:
        if any(k.startswith(b"book/") for k in entries):
            future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            future.set_exception(RuntimeError("changelog unavailable"))
            return future
        return super().write(partition, entries)


def test_a_checkpoint_that_cannot_be_written_stops_the_worker_without_acking() -> None:
    broker = twin.Broker(twin.frame_logs(session()), store=FailingStore())

    async def scenario() -> None:
        runtime, _ = await twin.start(broker)
        for offset in range(3):
            key, value = broker.logs[0][offset]
            event: Any = twin.Event(twin.Message(twin.TOPICS.frames, 0, offset, key, value), broker)
            await runtime.on_event(event)
        runtime.start_checkpoint(0)
        await runtime.settle()
        await asyncio.sleep(0)
        assert isinstance(runtime.fatal, StreamsError) and runtime.app.crashed is runtime.fatal
        assert "changelog unavailable" in str(runtime.fatal)
        assert not broker.acked.get(0)  # nothing may be committed past a checkpoint that is not durable

    asyncio.run(scenario())


class PartlyRecoveredStore(twin.PartlyRecovered, MemoryCheckpointStore):
    """A changelog-backed store in the middle of a recovery round: ``pending`` partitions are not read yet."""


def test_partitions_not_recovered_are_restored_by_a_later_round_and_their_frames_come_again() -> None:
    store = PartlyRecoveredStore()
    broker = twin.Broker(twin.frame_logs(session()), store=store)

    async def scenario() -> None:
        runtime, _ = await twin.start(broker)
        for offset in range(5):
            key, value = broker.logs[1][offset]
            await runtime.on_event(twin.Event(twin.Message(twin.TOPICS.frames, 1, offset, key, value), broker))
        await runtime.checkpoint(1)
        store.pending = {1}
        again, sink = twin.new_runtime(broker)
        await again.on_rebalance_complete(None)  # a round that did not read partition 1's changelog
        assert sorted(again.keeper.partitions) == [0] and not again.ready
        key, value = broker.logs[1][5]
        await again.on_event(twin.Event(twin.Message(twin.TOPICS.frames, 1, 5, key, value), broker))
        assert not sink.outputs and 5 not in broker.acked.get(1, set())  # left for redelivery
        store.pending = set()
        await again.on_rebalance_complete(None)  # the next round read it
        assert again.ready
        restored = again.keeper.partitions[1]
        assert [t.state.offset for t in restored.books.values()] == [4]

    asyncio.run(scenario())


class RebalancingConsumer(twin.Consumer):
    """Its highwaters answer arrives after the group rebalanced (the runtime's hooks run meanwhile)."""

    runtime: Any = None

    async def highwaters(self, *tps: Any) -> dict[Any, int]:
        await self.runtime.on_assigned(None, set(self.assignment()))
        return await super().highwaters(*tps)


def test_a_restore_spanning_a_rebalance_is_void() -> None:
    broker = twin.Broker(twin.frame_logs(session()))

    async def scenario() -> None:
        runtime, _ = twin.new_runtime(broker)
        consumer = RebalancingConsumer(broker)
        consumer.runtime = runtime
        runtime.app.consumer = consumer
        await runtime.on_rebalance_complete(None)
        assert not runtime.keeper.partitions and not runtime.ready

    asyncio.run(scenario())
