"""A watchdog for Faust's table recovery, which can stall with records left to read.

Faust reads a table's changelog partitions through the same consumer as the streams, after a rebalance pauses and
resumes partitions and the flow of records. Now and then that round reads nothing at all from a changelog partition
that has records left (Faust logs "No event received for active tp ... since recovery start" and waits for ever);
a worker in that state owns its partitions but never becomes ready. The watchdog looks at the round every few
seconds and, when an active changelog partition with records left has read nothing for ``stall_s``:

1. seeks the stalled partitions again to the offset Faust needs next, and resumes them and the flow (what the
   round itself does when it starts);
2. if they are still stalled ``stall_s`` later, asks the consumer group to rebalance: a new round seeks and
   resumes everything afresh;
3. after ``max_rejoins`` rebalances without progress, stops the worker with an error naming the partitions, so
   that its supervisor (``orderflow run``, Kubernetes) starts it again.

Progress on any of the partitions resets the ladder. Each step is logged with the state it saw and counted in
``<namespace>_table_recovery_stalls_total{action}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from faust.types import TP
from prometheus_client import CollectorRegistry, Counter

from streams.errors import StreamsError

logger = logging.getLogger(__name__)

CHECK_EVERY_S = 2.0


class RecoveryStalled(StreamsError):
    """Table recovery read nothing from partitions with records left, even after the watchdog's remedies."""


class RecoveryWatchdog:
    def __init__(self, app: Any, registry: CollectorRegistry | None = None, namespace: str = "orderflow",
                 stall_s: float = 20.0, max_rejoins: int = 2, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.stall_s = stall_s
        self.max_rejoins = max_rejoins
        self.clock = clock
        self.actions = Counter(f"{namespace}_table_recovery_stalls", "stalled table recovery rounds, by the "
                               "remedy applied (reseek, rejoin, stop)", ["action"],
                               registry=registry)
        self._offsets: dict[TP, int | None] = {}
        self._since: float | None = None
        self._steps = 0  # remedies applied since the last progress

    async def run(self) -> None:
        """Check every ``CHECK_EVERY_S`` seconds until cancelled."""
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            await self.check()

    async def check(self) -> None:
        recovery = self.app.tables.recovery
        now = self.clock()
        pending = self._pending(recovery)
        if not pending:
            self._offsets, self._since = {}, None
            if not recovery.in_recovery:
                self._steps = 0
            return
        offsets = {tp: recovery.active_offsets.get(tp) for tp in pending}
        if offsets != self._offsets or self._since is None:
            if self._offsets and offsets != self._offsets:
                self._steps = 0  # records were read since the last look
            self._offsets, self._since = offsets, now
            return
        if now - self._since < self.stall_s:
            return
        self._since = now
        self._steps += 1
        await self._remedy(recovery, sorted(pending))

    @staticmethod
    def _pending(recovery: Any) -> set[TP]:
        """The active changelog partitions of the current round with records left to read."""
        if not recovery.in_recovery:
            return set()
        return {tp for tp, left in recovery.active_remaining().items() if left > 0}

    async def _remedy(self, recovery: Any, stalled: list[TP]) -> None:
        state = self._describe(recovery, stalled)
        if self._steps == 1:
            logger.warning("table recovery read nothing for %.0f s from %s; seeking them again (%s)",
                           self.stall_s, _names(stalled), state)
            self.actions.labels("reseek").inc()
            await self._reseek(recovery, stalled)
        elif self._steps <= 1 + self.max_rejoins:
            logger.warning("table recovery still stalled on %s; asking the group to rebalance (%s)",
                           _names(stalled), state)
            self.actions.labels("rejoin").inc()
            await self.app.consumer.request_rejoin()
        else:
            self.actions.labels("stop").inc()
            error = RecoveryStalled(f"table recovery read nothing from {_names(stalled)} after a seek and "
                                    f"{self.max_rejoins} rebalances ({state}); stopping so the worker restarts")
            logger.critical("%s", error)
            await self.app.crash(error)

    async def _reseek(self, recovery: Any, stalled: list[TP]) -> None:
        """Seek to where the round reads next (Faust seeks to the last offset read; it skips what it has seen)."""
        consumer = self.app.consumer
        await consumer.seek_wait({tp: max(recovery.active_offsets.get(tp) or 0, 0) for tp in stalled})
        consumer.resume_partitions(stalled)
        self.app.flow_control.resume()
        consumer.resume_flow()
        await self.app._fetcher.maybe_start()

    def _describe(self, recovery: Any, stalled: list[TP]) -> str:
        """What the consumer's flow control says about the stalled partitions, for the log."""
        consumer = self.app.consumer
        active: set[TP] = getattr(consumer, "_active_partitions", None) or set()
        paused: set[TP] = getattr(consumer, "_paused_partitions", set())
        buffered: set[TP] = getattr(consumer, "_buffered_partitions", set())
        parts = [f"{tp.topic}[{tp.partition}]: read to {recovery.active_offsets.get(tp)} of "
                 f"{recovery.active_highwaters.get(tp)}, active={tp in active}, paused={tp in paused}, "
                 f"buffered={tp in buffered}" for tp in stalled]
        parts.append(f"flow_active={getattr(consumer, 'flow_active', None)}")
        parts.append(f"flow_control_active={self.app.flow_control.is_active()}")
        parts.append(f"fetcher={self.app._fetcher.state}")
        return "; ".join(parts)


def _names(tps: list[TP]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in tps)
