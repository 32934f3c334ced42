"""Playback control of a replay over a small HTTP API on loopback (documented in docs/producers.md).

``GET /status``; ``POST /pause``, ``/resume``, ``/speed?x=10`` (``x=max``: as fast as possible) and
``/seek?ts=ISO-or-ns``. Responses are JSON with ``Access-Control-Allow-Origin: *`` so a web page can drive it.

The HTTP server runs in its own daemon thread; it only sets fields of :class:`PlaybackControl`, which the replay
loop reads between slices of records: the loop never waits on the server.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from producers.errors import ProducerError
from producers.pacing import format_ts, parse_speed, parse_ts

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8790
_NO_SEEK = -1


class ControlError(ProducerError):
    """The control API could not start (port taken)."""


class PlaybackControl:
    """Requested playback state, set by the API (any thread) and applied by the replay loop."""

    def __init__(self, speed: float | None = None) -> None:
        self._lock = threading.Lock()
        self.paused = False
        self.speed = speed
        self._seek_ns = _NO_SEEK
        self.commands = 0  # bumped by every command, so the loop can tell something changed cheaply

    def pause(self) -> None:
        with self._lock:
            self.paused = True
            self.commands += 1

    def resume(self) -> None:
        with self._lock:
            self.paused = False
            self.commands += 1

    def set_speed(self, speed: float | None) -> None:
        with self._lock:
            self.speed = speed
            self.commands += 1

    def seek(self, ts_ns: int) -> None:
        with self._lock:
            self._seek_ns = ts_ns
            self.commands += 1

    def take_seek(self) -> int | None:
        """The pending seek target, once (None when there is none)."""
        with self._lock:
            ts, self._seek_ns = self._seek_ns, _NO_SEEK
        return None if ts == _NO_SEEK else ts

    @property
    def seek_pending(self) -> bool:
        return self._seek_ns != _NO_SEEK


StatusFn = Callable[[], dict[str, Any]]


class ControlServer:
    """The HTTP API over a :class:`PlaybackControl`; ``status_fn`` returns the replay's current status."""

    def __init__(self, control: PlaybackControl, status_fn: StatusFn, port: int = DEFAULT_PORT,
                 host: str = "127.0.0.1") -> None:
        self.control = control
        self.status_fn = status_fn
        self.host = host
        handler = type("Handler", (_Handler,), {"api": self})
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as e:
            raise ControlError(
                f"cannot serve the control API on {host}:{port}: {e.strerror or e}; "
                "choose another --control-port (0: any free port) or --no-control"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="replay-control", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ControlServer:
        self._thread.start()
        logger.info("playback control on %s (GET /status, POST /pause /resume /speed?x= /seek?ts=)", self.url)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) of one request."""
        if method == "GET" and path == "/status":
            return 200, self.status_fn()
        actions: dict[str, Callable[[dict[str, list[str]]], dict[str, Any]]] = {
            "/pause": self._pause, "/resume": self._resume, "/speed": self._speed, "/seek": self._seek,
        }
        action = actions.get(path)
        if action is None:
            return 404, {"error": f"no such endpoint {path}; try GET /status, POST /pause /resume /speed /seek"}
        if method != "POST":
            return 405, {"error": f"{path} needs POST"}
        try:
            return 200, {"ok": True, **action(query)}
        except (ProducerError, ValueError) as e:
            return 400, {"ok": False, "error": str(e)}

    def _pause(self, query: dict[str, list[str]]) -> dict[str, Any]:
        self.control.pause()
        return {"paused": True}

    def _resume(self, query: dict[str, list[str]]) -> dict[str, Any]:
        self.control.resume()
        return {"paused": False}

    def _speed(self, query: dict[str, list[str]]) -> dict[str, Any]:
        text = _param(query, "x")
        speed = parse_speed(text)
        self.control.set_speed(speed)
        return {"speed": speed}

    def _seek(self, query: dict[str, list[str]]) -> dict[str, Any]:
        ts = parse_ts(_param(query, "ts"))
        self.control.seek(ts)
        return {"seek_ts": ts, "seek_time": format_ts(ts)}


def _param(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    if not values:
        raise ValueError(f"missing query parameter {name!r}")
    return values[0]


class _Handler(BaseHTTPRequestHandler):
    api: ControlServer
    server_version = "orderflow-replay"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_OPTIONS(self) -> None:  # CORS preflight
        self.send_response(204)
        self._cors()
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # a body is allowed and ignored: parameters are in the query string
        try:
            status, body = self.api.handle(method, parts.path.rstrip("/") or "/", parse_qs(parts.query))
        except Exception as e:  # never kill the server thread; the replay goes on
            logger.exception("control API error on %s %s", method, self.path)
            status, body = 500, {"ok": False, "error": str(e)}
        data = json.dumps(body).encode()
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Content-Type")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("control: " + format, *args)
