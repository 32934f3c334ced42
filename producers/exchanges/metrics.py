"""Prometheus metrics per venue, and ``/health``, served by a small aiohttp app on ``--metrics-port``.

Counters live as plain integers in each venue's :class:`VenueStats` (cheap on the hot path); a custom collector
turns them into Prometheus families at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from producers.exchanges.connection import Connector
from producers.exchanges.publisher import LatencyHistogram
from producers.exchanges.queue import DropQueue

PREFIX = "orderflow_exchange"
COUNTERS = (
    ("messages", "frames received"),
    ("trades", "trade ticks produced"),
    ("quotes", "quote ticks produced"),
    ("book_updates", "L2 book updates produced"),
    ("reconnects", "reconnections"),
    ("gaps", "sequence gaps and book inconsistencies (each resets and resyncs the book)"),
    ("checksum_failures", "book checksum mismatches (each resets and resyncs the book)"),
    ("checksums_ok", "book checksums verified"),
    ("resyncs", "book resyncs requested"),
    ("queue_drops", "records dropped by the full socket-to-Kafka queue"),
    ("malformed", "malformed frames skipped"),
    ("unknown", "frames of unknown message types skipped"),
    ("out_of_order", "sequenced messages older than the last one, skipped"),
    ("unrepresentable", "book levels priced beyond the records' Int64 range, not published"),
    ("published", "records handed to Kafka"),
)


class IngestCollector(Collector):
    def __init__(self, connectors: Sequence[Connector], queue: DropQueue, latency: LatencyHistogram) -> None:
        self.connectors = connectors
        self.queue = queue
        self.latency = latency

    def collect(self) -> Iterator[Metric]:
        for name, doc in COUNTERS:
            fam = CounterMetricFamily(f"{PREFIX}_{name}", f"Per venue: {doc}", labels=["venue"])
            for c in self.connectors:
                fam.add_metric([c.venue.name], getattr(c.venue.stats, name))
            yield fam
        up = GaugeMetricFamily(f"{PREFIX}_connected", "1 while the venue's socket is open", labels=["venue"])
        for c in self.connectors:
            up.add_metric([c.venue.name], 1.0 if c.state.connected else 0.0)
        yield up
        yield GaugeMetricFamily(f"{PREFIX}_queue_depth", "records waiting for Kafka", value=len(self.queue))
        yield self._histogram()

    def _histogram(self) -> HistogramMetricFamily:
        h = self.latency
        cumulative, running = [], 0
        for bound, n in zip((*h.buckets, float("inf")), h.counts, strict=True):
            running += n
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return HistogramMetricFamily(
            f"{PREFIX}_receipt_to_publish_seconds",
            "Our receipt (ts_recv) to the Kafka acknowledgement, per record (the oldest record of its frame's)",
            buckets=cumulative, sum_value=h.sum,
        )


def health(connectors: Iterable[Connector], watchdog_s: float) -> tuple[bool, dict[str, object]]:
    """Healthy when every venue is connected and heard from within its watchdog."""
    now, ok, venues = time.monotonic(), True, {}
    for c in connectors:
        age = now - c.state.last_message if c.state.last_message else None
        good = c.state.connected and age is not None and age < watchdog_s
        ok = ok and good
        venues[c.venue.name] = {
            "connected": c.state.connected, "last_message_age_s": age, "ok": good,
            "reconnects": c.venue.stats.reconnects, "last_error": c.state.last_error,
        }
    return ok, {"ok": ok, "venues": venues}


def make_app(connectors: Sequence[Connector], queue: DropQueue, latency: LatencyHistogram, watchdog_s: float,
             ) -> web.Application:
    registry = CollectorRegistry()
    registry.register(IngestCollector(connectors, queue, latency))

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain", charset="utf-8")

    async def healthz(_: web.Request) -> web.Response:
        ok, doc = health(connectors, watchdog_s)
        return web.json_response(doc, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", healthz)
    return app
