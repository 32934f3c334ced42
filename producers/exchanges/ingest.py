"""``orderflow ingest``: venues' WebSockets -> bounded queue -> Kafka, with metrics and /health.

Endpoints: a venue connects to ``--endpoint-override venue=ws://127.0.0.1:PORT[/path]`` when given (its REST
snapshots then come from ``http://127.0.0.1:PORT``); the venue's public endpoint is used only with ``live=True``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from producers.exchanges import venue_class
from producers.exchanges.base import Record, Venue
from producers.exchanges.connection import Backoff, Connector
from producers.exchanges.errors import ExchangeError
from producers.exchanges.metrics import make_app
from producers.exchanges.publisher import KafkaPublisher, LatencyHistogram
from producers.exchanges.queue import DropQueue, Policy

logger = logging.getLogger(__name__)
WARM_UP_S = 5.0  # how long the start waits for the topics' metadata at most


@dataclass
class IngestConfig:
    venues: Sequence[str]  # venue names; "VENUE#N" opens another connection to VENUE under that name
    bootstrap: str
    symbols: Mapping[str, Sequence[str]] = field(default_factory=dict)  # venue -> symbols ("*": every venue)
    endpoints: Mapping[str, str] = field(default_factory=dict)  # venue -> ws:// override
    live: bool = False  # allow the venues' public endpoints
    queue_max: int = 100_000
    queue_policy: Policy = "drop-oldest"
    watchdog_s: float = 30.0
    metrics_port: int = 0  # 0: no metrics server
    bind_host: str = "127.0.0.1"  # the metrics server listens here
    duration_s: float = 0.0  # 0: until stopped
    backoff: Backoff = field(default_factory=Backoff)
    kafka: Mapping[str, Any] = field(default_factory=dict)  # extra librdkafka settings
    keep_latency_samples: bool = False
    topics: Mapping[str, str] = field(default_factory=dict)  # record type name -> topic, replacing the catalog's


def endpoints_for(venue: type[Venue], override: str | None, live: bool) -> tuple[str, str]:
    """(ws url, REST base) for a venue."""
    if override:
        parts = urlsplit(override)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ExchangeError(f"{venue.name}: endpoint override {override!r} is not a ws:// URL")
        rest = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
        return override, rest
    if not live:
        raise ExchangeError(
            f"{venue.name}: no --endpoint-override {venue.name}=ws://127.0.0.1:PORT given "
            "(the venue's public endpoint is only used with --live)"
        )
    return venue.url, venue.rest_url


class Ingest:
    """The running pipeline: one :class:`Connector` per venue, one queue, one Kafka publisher."""

    def __init__(self, config: IngestConfig) -> None:
        self.config = config
        self.venues: list[Venue] = []
        for name in config.venues:
            cls = venue_class(name.partition("#")[0])  # "okx#2": a second connection to okx, named okx#2
            symbols = config.symbols.get(name) or config.symbols.get(cls.name) or config.symbols.get("*") or ()
            self.venues.append(cls(list(symbols), label=name))
        self.endpoints = {  # resolved up front: a missing endpoint fails before anything starts
            v.name: endpoints_for(type(v), config.endpoints.get(v.name), config.live) for v in self.venues
        }
        self.stats = {v.name: v.stats for v in self.venues}
        self.latency = LatencyHistogram(keep_samples=config.keep_latency_samples)
        self.queue = DropQueue(config.queue_max, config.queue_policy, self._dropped)
        self.publisher = KafkaPublisher(
            config.bootstrap, self.stats, self.latency, config.kafka, topics=config.topics,
        )
        self.connectors: list[Connector] = []
        self.stop_event: asyncio.Event | None = None

    def _dropped(self, record: Record) -> None:
        self.stats[record.venue].queue_drops += 1

    def _sink(self, records: list[Record]) -> None:
        self.queue.put_many(records)

    async def run(self) -> None:
        stop = self.stop_event = asyncio.Event()
        cfg = self.config
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=10)) as session:
            self.connectors = [
                Connector(v, *self.endpoints[v.name], self._sink, session,
                          watchdog_s=cfg.watchdog_s, backoff=cfg.backoff)
                for v in self.venues
            ]
            runner = await self._start_metrics()
            # the topics' metadata first, so that the first ticks do not wait for it; a broker that does not answer
            # within WARM_UP_S holds the feeds back no longer (their records then wait in the queue)
            await asyncio.to_thread(self.publisher.warm_up, WARM_UP_S)
            publisher = asyncio.create_task(self.publisher.run(self.queue, stop))
            tasks = [asyncio.create_task(c.run(stop)) for c in self.connectors]
            if cfg.duration_s > 0:
                asyncio.get_running_loop().call_later(cfg.duration_s, stop.set)
            try:
                await stop.wait()
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                await publisher  # drains the queue; delivery reports are served meanwhile
                await asyncio.to_thread(self.publisher.flush, 30.0)
                if runner is not None:
                    await runner.cleanup()

    async def _start_metrics(self) -> web.AppRunner | None:
        if not self.config.metrics_port:
            return None
        app = make_app(self.connectors, self.queue, self.latency, self.config.watchdog_s)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.config.bind_host, self.config.metrics_port).start()
        logger.info("metrics on http://%s:%d/metrics, health on /health", self.config.bind_host,
                    self.config.metrics_port)
        return runner

    def stop(self) -> None:
        if self.stop_event is not None:
            self.stop_event.set()


def summary(ingest: Ingest) -> dict[str, Any]:
    """What ``orderflow ingest`` prints on exit: each venue's non-zero counters and the queue's drops."""
    return {"venues": {name: {k: v for k, v in vars(st).items() if v} for name, st in ingest.stats.items()},
            "queue_dropped": ingest.queue.dropped}


def run_ingest(config: IngestConfig) -> Ingest:
    """Run until SIGINT/SIGTERM (or ``duration_s``); returns the finished pipeline (for its counters)."""
    ingest = Ingest(config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, ingest.stop)
        await ingest.run()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop is a dependency
        asyncio.run(main())
    return ingest
