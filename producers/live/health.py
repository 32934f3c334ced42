"""Metrics of ``orderflow live`` and its small HTTP server: ``/metrics`` (Prometheus) and ``/health`` (JSON).

The producer counters (:class:`~producers.metrics.ProducerMetrics`, labelled ``source="live"``) are the replay's;
the live source adds connection and resume counters to the same registry. ``/health`` answers 200 while the
source is connected and has heard from the gateway (a record or a heartbeat) within the watchdog, 503 otherwise,
with the status as JSON either way.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from producers.errors import ProducerError
from producers.metrics import ProducerMetrics

logger = logging.getLogger(__name__)


class LiveMetrics(ProducerMetrics):
    """The producer metrics plus the live source's own."""

    def __init__(self, topic: str, dataset: str) -> None:
        super().__init__("live", topic)
        labels, values = ("dataset",), (dataset,)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, labels, registry=self.registry).labels(*values)

        self.connections = counter("orderflow_live_connections", "Sessions opened with the live gateway")
        self.disconnects = counter("orderflow_live_disconnects", "Sessions that ended without being asked to")
        self.records_received = counter("orderflow_live_records_received", "MBO records received from the gateway")
        self.duplicates = counter("orderflow_live_duplicates_dropped",
                                  "Records a resubscription replayed and that were already published")
        self.gateway_errors = counter("orderflow_live_gateway_errors", "Error messages sent by the gateway")
        self.connected = Gauge("orderflow_live_connected", "1 while a session is streaming", labels,
                               registry=self.registry).labels(*values)
        self.last_ts_event = Gauge("orderflow_live_last_ts_event_seconds", "ts_event of the last record published",
                                   labels, registry=self.registry).labels(*values)


StatusFn = Callable[[], tuple[bool, dict[str, Any]]]


class HealthServer:
    """``GET /metrics`` and ``GET /health`` on ``host:port`` from a daemon thread."""

    def __init__(self, metrics: ProducerMetrics, status_fn: StatusFn, port: int, host: str = "127.0.0.1") -> None:
        handler = type("Handler", (_Handler,), {"metrics": metrics, "status_fn": staticmethod(status_fn)})
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as e:
            raise ProducerError(
                f"cannot serve /metrics and /health on {host}:{port}: {e.strerror or e}; choose another "
                "--metrics-port (0: off)"
            ) from e
        self._server.daemon_threads = True
        self.host = host
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        logger.info("metrics on http://%s:%d/metrics, health on /health", self.host, self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    metrics: ProducerMetrics
    status_fn: StatusFn
    server_version = "orderflow-live"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/metrics":
            self._reply(200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
        elif path == "/health":
            try:
                ok, doc = self.status_fn()
            except Exception as e:  # never kill the server thread
                logger.exception("health check failed")
                ok, doc = False, {"ok": False, "error": str(e)}
            self._reply(200 if ok else 503, json.dumps(doc).encode(), "application/json")
        else:
            self._reply(404, b'{"error": "try /health or /metrics"}', "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http: " + format, *args)
