"""Faust's Kafka transport with a short fetch wait, and the app class that uses it.

Faust creates its aiokafka consumer with ``fetch_max_wait_ms=1500``, fixed. aiokafka leaves a partition out of a
fetch request while records of it wait to be consumed, and sends at most one fetch request per broker at a time;
so when the busy partition's records are consumed while a request for the idle partitions is in flight, the busy
partition is not fetched again until that request returns: up to 1.5 s later. Measured at 2,000 records/s on this
machine, BBO latency showed a saw-tooth of ~1.5 s stalls. A short wait bounds the stall; the cost is that an idle
worker asks the broker for data ``1000 / fetch_wait_ms`` times a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, TransportT

from streams.batching import DEFAULT_BATCH_MAX, BatchingConsumer
from streams.intake import FETCH_MIN_BYTES, FETCH_WAIT_MS, IntakeConsumer
from streams.recovery_watch import RecoveryWatchdog

DEFAULT_FETCH_WAIT_MS = 10
IDLE_FETCH_WAIT_MS = 100  # aiokafka's fetch wait when it reads no hot topic (streams.intake)


# Faust's services log under their module's name; keep these under Faust's (quiet unless asked, see topics.logs)
_FAUST_LOG = logging.getLogger("faust.orderflow")


async def seek_to_committed(consumer: AIOKafkaConsumer, reset: str, sources: Callable[[str], bool]
                            ) -> dict[Any, int | None]:
    """Every assigned partition to its committed offset, and the agents' source partitions without one (or with
    0) to where ``reset`` says a partition without one starts; the committed offsets, as aiokafka gives them.

    aiokafka seeks only the partitions whose committed offset is above 0 and leaves the others where their fetches
    left them. Faust seeks to the committed offsets to start again after a rebalance, dropping what it had fetched
    meanwhile; so a partition with nothing committed yet went on after records no agent got: the features worker,
    restarted on an empty folder while its table recovered, skipped the start of inputs it had never acked.
    Changelog partitions stay where they are: table recovery positions them itself."""
    committed = await consumer.seek_to_committed()
    fresh = []
    for tp, offset in committed.items():
        if not sources(tp.topic):
            continue
        if offset == 0:
            consumer.seek(tp, 0)
        elif offset is None or offset < 0:
            fresh.append(tp)
    if fresh:
        await (consumer.seek_to_end(*fresh) if reset == "latest" else consumer.seek_to_beginning(*fresh))
    return committed


class ConsumerThread(driver.AIOKafkaConsumerThread):
    logger = _FAUST_LOG

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads it when the consumer starts its fetcher, after this
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_wait_ms", DEFAULT_FETCH_WAIT_MS)
        if cast(Consumer, self.consumer).intake_topics():
            # the intake reads the hot topics: aiokafka reads changelogs (a fetch with records returns at once)
            # and the leader topic, which need not be asked for ``1000 / fetch_wait_ms`` times a second
            consumer._fetch_max_wait_ms = max(consumer._fetch_max_wait_ms, IDLE_FETCH_WAIT_MS)
        return consumer

    async def on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
        """The partitions the intake reads (:mod:`streams.intake`) stay paused in aiokafka: it never fetches them."""
        topics = cast(Consumer, self.consumer).intake_topics()
        hot = [TopicPartition(tp.topic, tp.partition) for tp in assigned if tp.topic in topics]
        if hot:
            self._ensure_consumer().pause(*hot)
        await super().on_partitions_assigned(assigned, generation_id)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        conf = self.app.conf
        return await self.call_thread(seek_to_committed, self._ensure_consumer(), conf.consumer_auto_offset_reset,
                                      self.app.topics.acks_enabled_for)

    async def request_rejoin(self) -> None:
        """Ask the group coordinator for a rebalance (in the consumer's own thread, where aiokafka runs)."""
        await self.call_thread(self._request_rejoin)

    async def _request_rejoin(self) -> None:
        self._ensure_consumer()._coordinator.request_rejoin()


class Consumer(IntakeConsumer, BatchingConsumer, driver.Consumer):
    logger = _FAUST_LOG

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def request_rejoin(self) -> None:
        """Make the group rebalance: a new round of table recovery seeks and resumes every partition."""
        await cast(ConsumerThread, self._thread).request_rejoin()


class Transport(driver.Transport):
    Consumer = Consumer


class BookApp(faust.App):
    """A Faust app whose consumer waits at most ``fetch_wait_ms`` for a fetch (see the module docstring), and
    whose table recovery is watched from the start (:mod:`streams.recovery_watch`; Faust starts timers and tasks
    only after the first round)."""

    logger = _FAUST_LOG
    fetch_wait_ms = DEFAULT_FETCH_WAIT_MS
    intake_fetch = (FETCH_WAIT_MS, FETCH_MIN_BYTES)  # the librdkafka intake's fetch: wait (ms), min bytes
    batch_topics: frozenset[str] = frozenset()  # records of these reach the agent in batches (streams.batching)
    batch_max = DEFAULT_BATCH_MAX  # records per batch at most; 1: one event per record, as Faust does
    intake = "faust"  # who reads batch_topics: faust (aiokafka) or librdkafka (streams.intake)
    bootstrap = ""  # host:port of the broker, for the intake's own consumer
    recovery_watchdog: RecoveryWatchdog | None = None

    async def on_start(self) -> None:
        await super().on_start()
        if self.recovery_watchdog is not None:
            self.add_future(self.recovery_watchdog.run())

    def _new_transport(self) -> TransportT:
        return Transport(self.conf.broker_consumer, self)
