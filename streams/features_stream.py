"""``/stream/features/{instrument}`` on the features worker: server-sent events of an instrument's latest bars.

Each ``bars`` event carries the document of ``/features/{instrument}`` (the latest closed bar of every interval,
named values) and is sent when a bar of the instrument closed. Its id is the newest bar's ``ts_event`` (ns), so a
reconnecting browser that sends ``Last-Event-ID`` gets the current document at once if a newer bar closed while it
was away, and otherwise waits for the next one. A client never has a queue: it is sent the latest document when it
is ready for one (a slow client skips bars; bars are also on ``features.bars``). Idle streams get a comment line
every ``ORDERFLOW_STREAMS_SSE_HEARTBEAT_MS``. Sample event::

    id: 1703548861000000000
    event: bars
    data: {"instrument":"17077","group":1,"bars":{"1000000000":{"interval_ns":1000000000,"ts_event":...,
           "values":{"mid":4810.125,...}}}}
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import Counter, Gauge

from streams.features_group import GroupKeeper
from streams.features_web import NS, features_doc

logger = logging.getLogger(__name__)

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-store",
               "X-Accel-Buffering": "no", "Connection": "keep-alive"}
_encode = msgspec.json.Encoder().encode
DISCONNECT_CHECK_S = 0.5


class BarSignal:
    """Wakes every waiting stream when bars close: each pulse sets the event the waiters hold and starts a new
    one, so a stream that took :attr:`event` before reading the state never misses a pulse."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.pulses = 0

    def pulse(self) -> None:
        event, self.event = self.event, asyncio.Event()
        self.pulses += 1
        event.set()


def newest_bar(doc: dict[str, Any] | None) -> int | None:
    """``ts_event`` of the newest bar in a ``/features/{instrument}`` document (None: no bar yet)."""
    if not doc or not doc["bars"]:
        return None
    return max(int(bar["ts_event"]) for bar in doc["bars"].values())


def bars_event(doc: dict[str, Any], event_id: int) -> bytes:
    return b"id: %d\nevent: bars\ndata: %s\n\n" % (event_id, _encode(doc))


def parse_last_id(raw: str | None) -> int | None:
    """``Last-Event-ID`` (or ``?lastEventId=``): a bar's ts_event; ValueError naming the problem otherwise."""
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"Last-Event-ID must be a bar's ts_event in ns, got {raw!r}") from None


class FeatureStreams:
    """The stream view and its metrics (in the worker's registry)."""

    def __init__(self, keeper: GroupKeeper, signal: BarSignal, registry: Any, heartbeat_s: float) -> None:
        self.keeper = keeper
        self.signal = signal
        self.heartbeat_s = heartbeat_s
        self.clients = Gauge(f"{NS}_stream_clients", "connected /stream/features clients", registry=registry)
        self.events = Counter(f"{NS}_stream_events", "bars events written to /stream/features clients",
                              registry=registry)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        instrument = request.match_info["instrument"]
        try:
            last = parse_last_id(request.headers.get("Last-Event-ID") or request.query.get("lastEventId"))
        except ValueError as e:
            return web.json_response({"error": str(e)}, status=400)
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        self.clients.inc()
        try:
            await response.write(b"retry: 2000\n\n")
            await self._serve(request, response, instrument, last)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away (or the server stops): nothing is held for it
        finally:
            self.clients.dec()
        return response

    async def _serve(self, request: web.Request, response: web.StreamResponse, instrument: str,
                     last: int | None) -> None:
        while True:
            event = self.signal.event  # taken before the state is read: a pulse after this wakes us
            doc = features_doc(self.keeper, instrument)
            newest = newest_bar(doc)
            if doc is not None and newest is not None and (last is None or newest > last):
                await response.write(bars_event(doc, newest))
                self.events.inc()
                last = newest
            woken = await self._wait(request, event)
            if woken is None:
                return  # the client went away
            if not woken:
                await response.write(b": heartbeat\n\n")

    async def _wait(self, request: web.Request, event: asyncio.Event) -> bool | None:
        """True when bars closed, False when a heartbeat is due, None when the client disconnected (checked every
        half second: aiohttp does not cancel a handler whose client went away)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.heartbeat_s
        while True:
            transport = request.transport
            if transport is None or transport.is_closing():
                return None
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(event.wait(), min(DISCONNECT_CHECK_S, left))
                return True
            except TimeoutError:
                continue


def register(web_app: web.Application, keeper: GroupKeeper, signal: BarSignal, registry: Any,
             heartbeat_s: float) -> FeatureStreams:
    """Add ``/stream/features/{instrument}`` to the worker's aiohttp application (before it starts)."""
    views = FeatureStreams(keeper, signal, registry, heartbeat_s)
    web_app.router.add_get("/stream/features/{instrument}", views.stream)
    return views
