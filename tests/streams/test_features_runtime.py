"""The features worker's restore rules on an in-memory store: a group is restored only once its checkpoint is
recovered, and a restore that spans a rebalance is void (the race that docs/streams.md describes)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.types import TP

from processors.features import FeatureConfig
from processors.regime import RegimeConfig
from streams.features_group import FeatureTopics, GroupKeeper
from streams.features_runtime import FeaturesRuntime, MemoryGroupStore
from streams.features_web import FeatureMetrics
from streams.output import MemorySink
from tests.streams.twin import PartlyRecovered
from topics.codec import decode, encode
from topics.records import FeatureBar, QuoteTick

pytestmark = pytest.mark.unit

TOPICS = FeatureTopics()
GROUPS = (0, 1, 2)


class PartlyRecoveredStore(PartlyRecovered, MemoryGroupStore):
    """A changelog-backed store in the middle of a recovery round: ``pending`` groups are not read yet."""


@dataclass
class Consumer:
    groups: tuple[int, ...] = GROUPS

    def assignment(self) -> set[TP]:
        return {TP(topic, n) for n in self.groups for topic in GroupKeeper(TOPICS, *configs()).types}

    def highwater(self, tp: TP) -> int | None:
        return None


@dataclass
class App:
    consumer: Consumer = field(default_factory=Consumer)

    async def crash(self, error: BaseException) -> None:
        raise error


def configs() -> tuple[FeatureConfig, RegimeConfig]:
    return FeatureConfig(intervals_ns=(1_000_000_000,)), RegimeConfig()


def runtime(store: MemoryGroupStore) -> FeaturesRuntime:
    return FeaturesRuntime(App(), GroupKeeper(TOPICS, *configs()), store, MemorySink(), FeatureMetrics(), 1.0, 1.0)


def test_groups_not_recovered_wait_for_a_later_round() -> None:
    store = PartlyRecoveredStore()
    store.pending = {1}
    rt = runtime(store)

    async def scenario() -> None:
        await rt.on_rebalance_complete(None)
        assert sorted(rt.keeper.groups) == [0, 2] and not rt.ready
        store.pending = set()
        await rt.on_rebalance_complete(None)
        assert sorted(rt.keeper.groups) == [0, 1, 2] and rt.ready

    asyncio.run(scenario())


def test_a_restore_spanning_a_rebalance_is_void() -> None:
    rt = runtime(MemoryGroupStore())

    async def floors_after_a_rebalance(streams: list[TP]) -> dict[TP, int]:
        await rt.on_assigned(None, rt.app.consumer.assignment())
        return {}

    rt.read_floors = floors_after_a_rebalance

    async def scenario() -> None:
        await rt.on_rebalance_complete(None)
        assert not rt.keeper.groups and not rt.ready

    asyncio.run(scenario())


@dataclass
class CaughtUpConsumer(Consumer):
    """Every input stream read to its end (empty logs)."""

    def highwater(self, tp: TP) -> int | None:
        return 0


def quiet_group_checkpoint(bar_ns: int, silence_ns: int) -> tuple[bytes, int]:
    """Group 0 after one quote and ``silence_ns`` of silence closed its bars by the idle rule: its checkpoint and
    the end of its open bar."""
    keeper = GroupKeeper(TOPICS, FeatureConfig(intervals_ns=(bar_ns,)), RegimeConfig())
    keeper.assign(0, None)
    quote = QuoteTick(venue="v", symbol="Q", ts_event=10 * bar_ns + 1, ts_recv=10 * bar_ns + 1, bid_px=10**11,
                      bid_sz=10**9, ask_px=10**11 + 10**8, ask_sz=10**9)
    keeper.handle(0, TOPICS.tick_quotes, 0, None, encode(quote), lambda _t: True, 0)
    keeper.idle(0, lambda _t: True, silence_ns, 0)
    keeper.finish(0)
    group = keeper.groups[0]
    return group.checkpoint(), group.open_end


def test_a_restored_quiet_group_closes_its_next_bar_without_waiting_its_old_silence_again() -> None:
    bar_ns = 100_000_000
    blob, open_end = quiet_group_checkpoint(bar_ns, silence_ns=20 * bar_ns)  # 2 s of quiet bars before the restart
    store = MemoryGroupStore()
    store.durable[0] = blob
    rt = FeaturesRuntime(App(CaughtUpConsumer(groups=(0,))),
                         GroupKeeper(TOPICS, FeatureConfig(intervals_ns=(bar_ns,)), RegimeConfig()), store,
                         MemorySink(), FeatureMetrics(), 1.0, idle_s=0.05)

    async def scenario() -> None:
        await rt.on_rebalance_complete(None)
        await asyncio.sleep(1.5 * bar_ns / 1e9)
        await rt.idle_tick()

    asyncio.run(scenario())

    ends = {decode(FeatureBar, v).ts_event for t, _, v in rt.sink.outputs if t == TOPICS.bars}
    assert open_end in ends, "the restored group's next quiet bar should close one bar after the restore"


def test_records_behind_a_quiet_groups_time_do_not_restart_its_silence() -> None:
    bar_ns = 100_000_000
    blob, open_end = quiet_group_checkpoint(bar_ns, silence_ns=20 * bar_ns)
    store = MemoryGroupStore()
    store.durable[0] = blob
    rt = FeaturesRuntime(App(CaughtUpConsumer(groups=(0,))),
                         GroupKeeper(TOPICS, FeatureConfig(intervals_ns=(bar_ns,)), RegimeConfig()), store,
                         MemorySink(), FeatureMetrics(), 10.0, idle_s=0.05)
    old = QuoteTick(venue="v", symbol="Q", ts_event=bar_ns, ts_recv=bar_ns, bid_px=10**11, bid_sz=10**9,
                    ask_px=10**11 + 10**8, ask_sz=10**9)  # the replay again: long before the group's time
    message = SimpleNamespace(partition=0, topic=TOPICS.tick_quotes, offset=1, key=None, value=encode(old),
                              timestamp=None)

    async def scenario() -> None:
        await rt.on_rebalance_complete(None)
        rt.on_event(cast(Any, SimpleNamespace(message=message, ack=lambda: None)))
        await asyncio.sleep(1.5 * bar_ns / 1e9)
        await rt.idle_tick()

    asyncio.run(scenario())

    ends = {decode(FeatureBar, v).ts_event for t, _, v in rt.sink.outputs if t == TOPICS.bars}
    assert rt.keeper.tally.records == 1 and open_end in ends


class LocalAheadStore(MemoryGroupStore):
    """A worker's own RocksDB holding a checkpoint that its changelog never got (the process was killed between
    the local write and the changelog's acknowledgement): ``load`` finds it, ``durable`` does not have it."""

    def __init__(self, local: bytes) -> None:
        super().__init__()
        self.local = local

    def load(self, number: int) -> bytes | None:
        return self.durable.get(number, self.local)


def test_records_a_local_only_checkpoint_covers_are_acked_only_once_a_checkpoint_is_durable() -> None:
    blob, _ = quiet_group_checkpoint(100_000_000, silence_ns=0)
    store = LocalAheadStore(blob)
    rt = FeaturesRuntime(App(CaughtUpConsumer(groups=(0,))),
                         GroupKeeper(TOPICS, FeatureConfig(intervals_ns=(100_000_000,)), RegimeConfig()), store,
                         MemorySink(), FeatureMetrics(), 10.0, idle_s=10.0)
    acked_with_durable: list[bool] = []
    again = SimpleNamespace(partition=0, topic=TOPICS.tick_quotes, offset=0, key=None, value=b"{}", timestamp=None)
    event = SimpleNamespace(message=again, ack=lambda: acked_with_durable.append(0 in store.durable))

    async def scenario() -> None:
        await rt.on_rebalance_complete(None)
        rt.on_event(cast(Any, event))  # re-delivered below the restored position: skipped
        rt.start_checkpoint(0)
        await rt.settle()

    asyncio.run(scenario())

    assert rt.keeper.tally.skipped == 1
    assert acked_with_durable == [True], "a record was acked (its offset committable) with no durable checkpoint"
