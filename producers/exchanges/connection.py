"""The venue-agnostic connection loop: connect, subscribe, receive, resync, reconnect.

- Reconnects with exponential backoff: 100 ms, 200 ms, 400 ms, ... capped at 30 s, each delay shortened by a random
  jitter of up to ``jitter`` (so a delay never exceeds the schedule); the schedule restarts once a connection has
  delivered a message.
- A watchdog: no message for ``watchdog_s`` closes the connection and reconnects.
- Resubscription: every (re)connection resets the venue's books and sends its subscription messages again.
- Resync requests from the venue's integrity rules: ``snapshot`` refetches the REST depth snapshot (Binance,
  Bitstamp) while the socket keeps buffering; ``reconnect`` re-establishes the connection (fresh WS snapshots).
- Every read off the socket is stamped ``ts_recv`` (ns) on receipt; each of its messages is parsed, the first
  record with that time and each later one 1 ns after the one before (receipt times are strictly increasing per
  connection), and the records are handed to ``sink`` together (:mod:`producers.exchanges.websocket`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
from msgspec.structs import replace

from producers.exchanges.base import Record, Resync, Venue
from producers.exchanges.websocket import WebSocket, WebSocketError
from topics.logs import RateLimitedLog

logger = logging.getLogger(__name__)
_ratelimited = RateLimitedLog(logger, interval_s=10.0)
CONNECT_TIMEOUT_S = 10.0  # TCP, TLS and the WebSocket handshake
CLOSE_TIMEOUT_S = 2.0  # how long the peer has to answer our close frame (the watchdog guards receiving)
STOP_GRACE_S = 3.0  # how long a connection may take to close once the ingest stops

Sink = Callable[[list[Record]], object]


@dataclass(frozen=True)
class Backoff:
    """``base * 2**attempt`` capped at ``cap`` seconds, minus up to ``jitter`` of itself at random."""

    base: float = 0.1
    cap: float = 30.0
    jitter: float = 0.2

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * (2 ** min(attempt, 30)))

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        return self.ceiling(attempt) * (1.0 - self.jitter * rng())


class Reconnect(Exception):
    """Raised inside the receive loop to drop the connection and start again."""


@dataclass
class ConnectionState:
    connected: bool = False
    connects: int = 0
    last_message: float = 0.0  # monotonic time of the last frame
    delays: list[float] | None = None  # backoff delays slept, most recent last (bounded)
    watchdog_fired: int = 0
    last_error: str = ""


class Connector:
    """Keeps one venue's WebSocket alive and feeds its records to ``sink``."""

    def __init__(
        self, venue: Venue, url: str, rest_url: str, sink: Sink, session: aiohttp.ClientSession,
        watchdog_s: float = 30.0, backoff: Backoff | None = None,
    ) -> None:
        self.venue = venue
        self.url = url
        self.rest_url = rest_url.rstrip("/")
        self.sink = sink
        self.session = session
        self.watchdog_s = watchdog_s
        self.backoff = backoff or Backoff()
        self.state = ConnectionState(delays=[])
        self._tasks: set[asyncio.Task[None]] = set()
        self._silent = False  # the watchdog closed the socket
        self._got = False  # the connection delivered a message
        self._reconnect: str | None = None  # why the messages asked for a new connection
        self._ws: WebSocket | None = None
        self._last_recv = 0  # receipt time given to the last message, ns

    async def run(self, stop: asyncio.Event) -> None:
        """Connect and reconnect until ``stop`` is set."""
        attempt = 0
        while not stop.is_set():
            got_messages = await self._until_stopped(self._session_once(stop), stop)
            if stop.is_set():
                break
            attempt = 0 if got_messages else attempt + 1
            self.venue.stats.reconnects += 1
            delay = self.backoff.delay(attempt)
            self._record_delay(delay)
            logger.info("%s: reconnecting in %.3fs (attempt %d)", self.venue.name, delay, attempt + 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        await self._cancel_tasks()

    async def _until_stopped(self, session: Coroutine[Any, Any, bool], stop: asyncio.Event) -> bool:
        """Run one connection's life; once ``stop`` is set it has ``STOP_GRACE_S`` to close cleanly and is then cut
        off, so that no peer (nor a snapshot fetch) can hold the process's exit."""
        life = asyncio.ensure_future(session)
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({life, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not life.done():
                await asyncio.wait({life}, timeout=STOP_GRACE_S)
            if not life.done():
                logger.warning("%s: the connection did not close within %.1f s of the stop: cut off",
                               self.venue.name, STOP_GRACE_S)
                life.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await life
                return True
            return life.result()
        finally:
            stopped.cancel()
            if not life.done():  # run() itself was cancelled
                life.cancel()

    def _record_delay(self, delay: float) -> None:
        delays = self.state.delays
        if delays is not None:
            delays.append(delay)
            del delays[:-100]

    async def _session_once(self, stop: asyncio.Event) -> bool:
        """One connection's life; returns whether it delivered any message."""
        self._got, self._reconnect, self._ws = False, None, None
        try:
            ws = self._ws = await WebSocket.connect(self.url, self._on_messages, timeout=CONNECT_TIMEOUT_S,
                                                    close_timeout=CLOSE_TIMEOUT_S)
            try:
                self._on_connected()
                for text in self.venue.subscribe_messages():
                    await ws.send_str(text)
                self._start_resyncs(self.venue.take_resyncs())
                await self._receive(ws, stop)
            finally:
                await ws.close()
        except Reconnect as e:
            self._got = True
            if not stop.is_set():
                self.state.last_error = str(e)
        except (WebSocketError, OSError, TimeoutError) as e:
            self.state.last_error = f"{type(e).__name__}: {e}"
            logger.warning("%s: connection to %s failed: %s", self.venue.name, self.url, self.state.last_error)
        finally:
            self.state.connected = False
            self._ws = None
            await self._cancel_tasks()
        return self._got

    def _on_connected(self) -> None:
        self.state.connected = True
        self.state.connects += 1
        self.state.last_message = time.monotonic()
        self.venue.reset()
        logger.info("%s: connected to %s", self.venue.name, self.url)

    async def _receive(self, ws: WebSocket, stop: asyncio.Event) -> None:
        """Wait while the socket hands its messages to :meth:`_on_messages`; raise :class:`Reconnect` when the
        connection ends for any reason but the stop."""
        self._silent = False
        watchdog = asyncio.create_task(self._watchdog(ws))
        closer = asyncio.create_task(_close_when(stop, ws))
        try:
            await ws.wait_ended()
        finally:
            watchdog.cancel()
            closer.cancel()
        if self._reconnect is not None:
            raise Reconnect(self._reconnect)
        if self._silent:
            raise Reconnect(f"no message for {self.watchdog_s}s")
        if not stop.is_set():
            raise Reconnect(f"socket closed: {ws.close_code} {ws.close_reason}".rstrip())

    def _on_messages(self, messages: list[bytes], ts_recv: int) -> None:
        """Called by the socket for every read: parse each message; the records of the read go to ``sink``
        together, and before any resync the messages ask for (a reconnect stops the socket's hand-over)."""
        self._got = True
        self.state.last_message = time.monotonic()
        venue, out, last = self.venue, [], self._last_recv
        for raw in messages:
            # the read's receipt time, then 1 ns more for each later record: receipt times are strictly increasing
            # per connection, so records received together keep their order and stay apart in the sink, whose
            # natural key for quotes holds ts_recv (a venue may send one symbol's quotes with one time stamp)
            last = ts_recv if ts_recv > last else last + 1
            records = venue.handle(raw, last)
            if len(records) > 1:
                records = [r if i == 0 else replace(r, ts_recv=last + i) for i, r in enumerate(records)]
                last += len(records) - 1
            self._last_recv = last
            if records:
                out += records
            if venue.resyncs:
                if out:
                    self.sink(out)
                    out = []
                try:
                    self._start_resyncs(venue.take_resyncs())
                except Reconnect as e:
                    self._reconnect = str(e)
                    if self._ws is not None:
                        self._ws.interrupt()
                    return
        if out:
            self.sink(out)

    async def _watchdog(self, ws: WebSocket) -> None:
        """Close the socket when nothing arrived for ``watchdog_s`` (the receive loop then reconnects)."""
        period = min(1.0, self.watchdog_s / 4)
        while time.monotonic() - self.state.last_message < self.watchdog_s:
            await asyncio.sleep(period)
        logger.warning("%s: no message for %.1fs, reconnecting", self.venue.name, self.watchdog_s)
        self._silent = True
        self.state.watchdog_fired += 1
        await ws.close()

    def _start_resyncs(self, resyncs: list[Resync]) -> None:
        for r in resyncs:
            if r.how == "reconnect":
                raise Reconnect(f"resync {r.symbol}: {r.reason}")
            task = asyncio.create_task(self._fetch_snapshot(r.symbol))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _fetch_snapshot(self, symbol: str) -> None:
        """Fetch and apply a REST snapshot, retrying on the backoff schedule for as long as the socket lives."""
        path = self.venue.snapshot_path(symbol)
        if path is None:
            return
        attempt = 0
        while True:
            try:
                async with self.session.get(self.rest_url + path) as resp:
                    resp.raise_for_status()
                    body = await resp.read()
                break
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                self.venue.stats.last_reason = f"{symbol}: snapshot fetch failed: {e}"
                _ratelimited.warning(f"{self.venue.name}:{symbol}:rest", time.monotonic(),
                                     "%s %s: snapshot fetch failed: %s", self.venue.name, symbol, e)
                await asyncio.sleep(self.backoff.delay(attempt))
                attempt += 1
        records = self.venue.on_snapshot(symbol, body, time.time_ns())
        if records:
            self.sink(records)

    async def _cancel_tasks(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


async def _close_when(stop: asyncio.Event, ws: WebSocket) -> None:
    """On stop, close the socket; a peer that does not answer the close handshake is cut off after
    ``CLOSE_TIMEOUT_S``."""
    await stop.wait()
    await ws.close()
