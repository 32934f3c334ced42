"""The table recovery watchdog: a stalled round is sought again, then rebalanced, then the worker stops.

Faust's stall cannot be produced on demand, so the recovery, consumer and app are stand-ins holding the same
attributes the watchdog reads.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.recovery_watch import RecoveryStalled, RecoveryWatchdog

pytestmark = pytest.mark.unit

CHANGELOG = TP("books-book-checkpoints-changelog", 1)
OTHER = TP("books-book-checkpoints-changelog", 0)


class FakeRecovery:
    def __init__(self) -> None:
        self.in_recovery = True
        self.active_offsets: dict[TP, int | None] = {CHANGELOG: -1, OTHER: 7}
        self.active_highwaters: dict[TP, int] = {CHANGELOG: 40, OTHER: 7}

    def active_remaining(self) -> Counter[TP]:
        return Counter({tp: high - (self.active_offsets[tp] or 0) for tp, high in self.active_highwaters.items()})


class FakeConsumer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.flow_active = False
        self._active_partitions: set[TP] = set()
        self._paused_partitions = {CHANGELOG}
        self._buffered_partitions: set[TP] = set()

    async def seek_wait(self, offsets: dict[TP, int]) -> None:
        self.calls.append(("seek", dict(offsets)))

    def resume_partitions(self, tps: list[TP]) -> None:
        self.calls.append(("resume", list(tps)))

    def resume_flow(self) -> None:
        self.flow_active = True

    async def request_rejoin(self) -> None:
        self.calls.append(("rejoin", None))


class FakeFlowControl:
    def __init__(self) -> None:
        self.active = False

    def resume(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


class FakeFetcher:
    state = "running"

    async def maybe_start(self) -> None:
        pass


class FakeApp:
    def __init__(self) -> None:
        self.tables = type("Tables", (), {"recovery": FakeRecovery()})()
        self.consumer = FakeConsumer()
        self.flow_control = FakeFlowControl()
        self._fetcher = FakeFetcher()
        self.crashed: BaseException | None = None

    async def crash(self, error: BaseException) -> None:
        self.crashed = error


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(stall_s: float = 20.0, max_rejoins: int = 2) -> tuple[FakeApp, RecoveryWatchdog, Clock, CollectorRegistry]:
    app, clock, registry = FakeApp(), Clock(), CollectorRegistry()
    return app, RecoveryWatchdog(app, registry, "test", stall_s, max_rejoins, clock), clock, registry


def step(watchdog: RecoveryWatchdog, clock: Clock, seconds: float) -> None:
    clock.now += seconds
    asyncio.run(watchdog.check())


def actions(registry: CollectorRegistry, action: str) -> float:
    return registry.get_sample_value("test_table_recovery_stalls_total", {"action": action}) or 0.0


def test_a_round_that_reads_records_is_left_alone() -> None:
    app, watchdog, clock, registry = make()
    recovery = app.tables.recovery
    for offset in range(0, 60, 5):
        recovery.active_offsets[CHANGELOG] = min(offset, 40)
        step(watchdog, clock, 15.0)

    assert app.consumer.calls == [] and app.crashed is None
    assert actions(registry, "reseek") == 0


def test_a_stalled_partition_is_sought_again_to_the_offset_it_needs_and_resumed() -> None:
    app, watchdog, clock, registry = make()
    step(watchdog, clock, 1.0)

    step(watchdog, clock, 19.0)  # not yet stall_s without progress
    assert app.consumer.calls == []
    step(watchdog, clock, 1.5)

    assert app.consumer.calls == [("seek", {CHANGELOG: 0}), ("resume", [CHANGELOG])]  # -1: from the start
    assert app.consumer.flow_active and app.flow_control.is_active()
    assert actions(registry, "reseek") == 1


def test_still_stalled_the_group_rebalances_then_the_worker_stops_naming_the_partition() -> None:
    app, watchdog, clock, registry = make(max_rejoins=2)
    app.tables.recovery.active_offsets[CHANGELOG] = 12
    step(watchdog, clock, 1.0)

    for _ in range(4):
        step(watchdog, clock, 21.0)

    kinds = [kind for kind, _ in app.consumer.calls]
    assert kinds == ["seek", "resume", "rejoin", "rejoin"]
    assert app.consumer.calls[0] == ("seek", {CHANGELOG: 12})
    assert isinstance(app.crashed, RecoveryStalled)
    assert "books-book-checkpoints-changelog[1]" in str(app.crashed)
    assert (actions(registry, "reseek"), actions(registry, "rejoin"), actions(registry, "stop")) == (1, 2, 1)


def test_progress_after_a_remedy_starts_the_ladder_again() -> None:
    app, watchdog, clock, _ = make()
    recovery = app.tables.recovery
    step(watchdog, clock, 1.0)
    step(watchdog, clock, 21.0)  # reseek
    recovery.active_offsets[CHANGELOG] = 30  # it reads again, then stalls once more
    step(watchdog, clock, 1.0)

    step(watchdog, clock, 21.0)

    assert [kind for kind, _ in app.consumer.calls] == ["seek", "resume", "seek", "resume"]
    assert app.consumer.calls[2] == ("seek", {CHANGELOG: 30})


def test_nothing_happens_outside_a_round_or_when_nothing_is_left_to_read() -> None:
    app, watchdog, clock, _ = make()
    recovery = app.tables.recovery
    recovery.in_recovery = False
    for _ in range(5):
        step(watchdog, clock, 30.0)
    recovery.in_recovery = True
    recovery.active_offsets[CHANGELOG] = 40  # read to the highwater: the round is about to end
    for _ in range(5):
        step(watchdog, clock, 30.0)

    assert app.consumer.calls == [] and app.crashed is None
