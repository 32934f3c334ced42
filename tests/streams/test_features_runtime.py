"""The features worker's restore rules on an in-memory store: a group is restored only once its checkpoint is
recovered, and a restore that spans a rebalance is void (the race that docs/streams.md describes)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from faust.types import TP

from processors.features import FeatureConfig
from processors.regime import RegimeConfig
from streams.features_group import FeatureTopics, GroupKeeper
from streams.features_runtime import FeaturesRuntime, MemoryGroupStore
from streams.features_web import FeatureMetrics
from streams.output import MemorySink
from tests.streams.twin import PartlyRecovered

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
