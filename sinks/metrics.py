"""Prometheus metrics of the sink and its ``/metrics`` + ``/health`` HTTP endpoint (one small server thread)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

logger = logging.getLogger(__name__)

_BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class SinkMetrics:
    """Every metric of one sink, in its own registry (several sinks can live in one test process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.rows_written = Counter("orderflow_sink_rows_written", "New rows stored, by table", ["table"], registry=r)
        self.rows_duplicate = Counter("orderflow_sink_rows_duplicate",
                                      "Rows skipped because their natural key was stored (replays)", ["table"],
                                      registry=r)
        self.messages = Counter("orderflow_sink_messages", "Kafka messages consumed, by topic", ["topic"], registry=r)
        self.batches = Counter("orderflow_sink_batches", "Batches committed to the database", registry=r)
        self.batch_seconds = Histogram("orderflow_sink_batch_seconds", "Time to write and commit one batch",
                                       buckets=_BATCH_BUCKETS, registry=r)
        self.batch_rows = Histogram("orderflow_sink_batch_rows", "Rows per committed batch",
                                    buckets=(10, 100, 1000, 5000, 10000, 20000, 50000, 100000), registry=r)
        self.retries = Counter("orderflow_sink_retries", "Database write attempts that failed and were retried",
                               registry=r)
        self.dead_letters = Counter("orderflow_sink_dead_letters", "Messages sent to the dead-letter topic",
                                    ["topic"], registry=r)
        self.lag = Gauge("orderflow_sink_lag_messages", "Messages in the partition not yet stored and committed",
                         ["topic", "partition"], registry=r)
        self.paused = Gauge("orderflow_sink_paused", "1 while the consumer is paused (backpressure or outage)",
                            registry=r)
        self.pending_rows = Gauge("orderflow_sink_pending_rows", "Rows held in memory, not yet committed",
                                  registry=r)
        self.commits = Counter("orderflow_sink_offset_commits", "Kafka offset commits after a database commit",
                               registry=r)
        self.commit_failures = Counter("orderflow_sink_offset_commit_failures", "Kafka offset commits that failed",
                                       registry=r)
        self.db_up = Gauge("orderflow_sink_database_up", "1 when the last database write succeeded", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """Serves ``/metrics`` (Prometheus text) and ``/health`` (JSON; 200 when healthy, 503 otherwise)."""

    def __init__(self, metrics: SinkMetrics, health: Callable[[], dict[str, Any]], host: str = "127.0.0.1",
                 port: int = 0) -> None:
        handler = _handler(metrics, health)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="sink-http", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        logger.info("serving /metrics and /health on http://%s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(metrics: SinkMetrics, health: Callable[[], dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics.render())
            elif path == "/health":
                doc = health()
                code = 200 if doc.get("status") == "ok" else 503
                self._send(code, "application/json", json.dumps(doc).encode())
            else:
                self._send(404, "text/plain", b"try /metrics or /health\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("http: " + format, *args)

    return Handler
