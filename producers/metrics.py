"""Prometheus metrics of a producer process (replay or simulator), served on ``--metrics-port``.

Each producer owns its :class:`~prometheus_client.CollectorRegistry`, so that several producers can live in one
process (tests) without clashing over metric names.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

logger = logging.getLogger(__name__)


class ProducerMetrics:
    """Counters and gauges of one producer; ``source`` labels them ("replay", "simulate")."""

    def __init__(self, source: str, topic: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ("source", "topic")
        values = (source, topic)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, labels, registry=self.registry).labels(*values)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, registry=self.registry).labels(*values)

        self.records_sent = counter("orderflow_producer_records_sent", "MBO records handed to Kafka in frames")
        self.frames_sent = counter("orderflow_producer_frames_sent", "Frames (Kafka messages) handed to Kafka")
        self.bytes_sent = counter("orderflow_producer_bytes_sent", "Bytes of frame values handed to Kafka")
        self.records_delivered = counter(
            "orderflow_producer_records_delivered", "MBO records whose frame the broker acknowledged",
        )
        self.delivery_failures = counter(
            "orderflow_producer_delivery_failures", "Frames whose delivery failed for good (after retries)",
        )
        self.rejected = counter("orderflow_producer_records_rejected", "Records refused because they do not validate")
        self.queue_depth = gauge("orderflow_producer_queue_depth", "Messages waiting in the producer's queue")
        self.rate = gauge("orderflow_producer_records_per_second", "Records sent per second, last second")

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``host:port`` from a background thread."""
        start_http_server(port, addr=host, registry=self.registry)
        logger.info("metrics on http://%s:%d/metrics", host, port)
