"""The live web view on the worker's web server: SSE streams, the page, and a proxy to the replay's control API.

Routes (documented in docs/web.md), added to the Faust app's aiohttp router:

- ``GET /stream/books/{instrument}?depth=N``: ``book`` events (conflated state) and ``anomaly`` events;
- ``GET /stream/trades/{instrument}?backfill=N``: ``trade`` events (the book.trades records as published);
- ``GET /stream/stats``: the hub's clients and counters (JSON);
- ``GET /view`` (and ``/``): the page; ``/view/static/*`` its files, ``/view/lib/*`` the charting library;
- ``GET /control/status``, ``POST /control/{pause,resume,speed,seek}``: forwarded to the replay's control API, so
  that the page talks to one origin.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import aiohttp
import msgspec
from aiohttp import web

from streams.keeper import Keeper
from streams.sse import BOOKS, TRADES, Hub, Snapshot, StreamError
from streams.web import parse_depth

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
LIBRARY = STATIC / "node_modules" / "uplot" / "dist"
LIBRARY_FILES = {"uPlot.iife.min.js": "application/javascript", "uPlot.min.css": "text/css"}
CONTROL_ACTIONS = ("pause", "resume", "speed", "seek")
CONTROL_TIMEOUT_S = 5.0
MAX_BACKFILL = 1000
HIGH_WATER = 64 * 1024  # bytes a client's socket may hold before the hub stops writing to it until it drains
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-store",
               "X-Accel-Buffering": "no", "Connection": "keep-alive"}
_encode = msgspec.json.Encoder().encode


def book_snapshot(keeper: Keeper) -> Snapshot:
    """The ``book`` event document of an instrument as the keeper holds it now (None when not kept).

    Prices are the raw 1e-9 fixed-point integers; levels are ``[price, size, orders]``, best first.
    """

    def snapshot(instrument: int, depth: int) -> bytes | None:
        tracked = keeper.book(instrument)
        if tracked is None:
            return None
        book, state = tracked.book, tracked.state
        stats = book.stats
        return _encode({
            "instrument_id": book.instrument_id, "publisher_id": book.publisher_id, "sequence": state.sequence,
            "ts_recv": state.ts_recv, "ts_event": state.ts_event, "crossed": book.is_crossed(),
            "bids": book.levels("B", depth), "asks": book.levels("A", depth), "orders": book.order_count,
            "stats": {f: getattr(stats, f) for f in stats.__struct_fields__}, "built_ns": time.time_ns(),
        })

    return snapshot


def parse_instrument(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise StreamError(f"instrument must be a numeric instrument id, got {raw!r}") from None
    if not 0 <= value < 2**32:
        raise StreamError(f"instrument must be between 0 and {2**32 - 1}, got {value}")
    return value


def parse_backfill(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise StreamError(f"backfill must be an integer, got {raw!r}") from None
    if not 0 <= value <= MAX_BACKFILL:
        raise StreamError(f"backfill must be between 0 and {MAX_BACKFILL}, got {value}")
    return value


class SseSocket:
    """A prepared SSE response's connection, written without awaiting (the hub writes to many clients in one pass):
    straight to the transport, in HTTP/1.1 chunks when aiohttp chose chunked encoding."""

    last_chunk: tuple[bytes, bytes] = (b"", b"0\r\n\r\n")  # (payload, its chunk) last written to any client

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self.request = request
        self.chunked = response.headers.get("Transfer-Encoding", "").lower() == "chunked"

    def write(self, data: bytes) -> bool:
        transport = self.request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client went away")
        if self.chunked:
            last = SseSocket.last_chunk
            if last[0] is not data:  # a fan-out pass writes the same payload to many clients: frame it once
                last = SseSocket.last_chunk = (data, b"%x\r\n%b\r\n" % (len(data), data))
            transport.write(last[1])
        else:
            transport.write(data)
        return transport.get_write_buffer_size() <= HIGH_WATER

    def closed(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    def buffered(self) -> int:
        transport = self.request.transport
        return 0 if transport is None else transport.get_write_buffer_size()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class LiveViews:
    """The handlers; one per worker, sharing its hub."""

    def __init__(self, hub: Hub, control_url: str) -> None:
        self.hub = hub
        self.control_url = control_url
        self._session: aiohttp.ClientSession | None = None

    async def stream(self, request: web.Request, stream: str) -> web.StreamResponse:
        try:
            instrument = parse_instrument(request.match_info["instrument"])
            depth = parse_depth(request.query.get("depth")) if stream == BOOKS else 0
            backfill = parse_backfill(request.query.get("backfill")) if stream == TRADES else 0
            last_id = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
            client, head = self.hub.subscribe(stream, instrument, last_id, depth=depth, backfill=backfill)
        except (StreamError, ValueError) as e:
            return _error(400, str(e))
        if request.method == "HEAD":  # headers only: no stream behind them
            self.hub.unsubscribe(client)
            return web.Response(headers=SSE_HEADERS)
        response = web.StreamResponse(headers=SSE_HEADERS)
        try:
            await response.prepare(request)
            await response.write(head)
            await self.hub.serve(client, SseSocket(request, response))
        except (ConnectionError, RuntimeError) as e:
            logger.debug("stream client gone before its first event: %s", e)
        finally:
            self.hub.unsubscribe(client)
        return response

    async def books(self, request: web.Request) -> web.StreamResponse:
        return await self.stream(request, BOOKS)

    async def trades(self, request: web.Request) -> web.StreamResponse:
        return await self.stream(request, TRADES)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.hub.stats())

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/view")

    async def library(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = LIBRARY / name
        if name not in LIBRARY_FILES:
            return _error(404, f"no library file {name!r}")
        if not path.is_file():
            return _error(404, f"{path} is missing: run ops/bootstrap.sh (npm ci in streams/static)")
        return web.FileResponse(path, headers={"Content-Type": LIBRARY_FILES[name],
                                               "Cache-Control": "max-age=3600"})

    async def control(self, request: web.Request) -> web.Response:
        """Forward a playback command (or the status) to the replay's control API."""
        action = request.match_info["action"]
        if action == "status":
            if request.method != "GET":
                return _error(405, "/control/status needs GET")
            method = "GET"
        elif action in CONTROL_ACTIONS:
            if request.method != "POST":
                return _error(405, f"/control/{action} needs POST")
            method = "POST"
        else:
            return _error(404, f"no control action {action!r}; try status, {', '.join(CONTROL_ACTIONS)}")
        url = f"{self.control_url}/{action}"
        try:
            session = self._client()
            async with session.request(method, url, params=request.query) as answer:
                body = await answer.read()
                return web.Response(body=body, status=answer.status, content_type="application/json")
        except (aiohttp.ClientError, TimeoutError) as e:
            logger.warning("replay control at %s not reachable: %s", url, e)
            reason = str(e) or type(e).__name__
            return _error(502, f"the replay's control API at {self.control_url} is not reachable ({reason}); "
                               "is `orderflow replay` running with its control port?")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CONTROL_TIMEOUT_S))
        return self._session

    async def shutdown(self, app: web.Application) -> None:
        await self.hub.close()
        if self._session is not None:
            await self._session.close()


def register(web_app: web.Application, hub: Hub, control_url: str) -> LiveViews:
    """Add the live routes to the worker's aiohttp application (before it starts)."""
    views = LiveViews(hub, control_url)
    router = web_app.router
    router.add_get("/stream/books/{instrument}", views.books)
    router.add_get("/stream/trades/{instrument}", views.trades)
    router.add_get("/stream/stats", views.stats)
    router.add_get("/view", views.page)
    router.add_get("/", views.root)
    router.add_get("/view/lib/{name}", views.library)
    router.add_static("/view/static", STATIC)
    router.add_route("*", "/control/{action}", views.control)
    web_app.on_shutdown.append(views.shutdown)
    return views

