"""The live hub: a worker's outputs fanned out to server-sent-event clients, with bounded state per client.

The book agent hands every frame's outputs to :meth:`Hub.publish` (through :class:`TeeSink`, next to the Kafka
producer). The hub keeps, per instrument, a :class:`Feed`: a version counter of the book, a small ring of recent
anomalies and a ring of recent trades, each entry numbered. A client holds no queue, only cursors (the last number
it was sent): when it wakes it sends the current book (conflated: the versions it skipped are counted, not kept)
and the ring entries after its cursor. A client that stops reading therefore costs the hub nothing more than its
cursors, and its socket buffer; after ``write_timeout_s`` without progress it is disconnected.

Event ids are ``<epoch>-<number>``, the epoch naming this hub's life: a browser that reconnects with
``Last-Event-ID`` from the same epoch gets the ring entries after that number (no gap while they are in the ring;
an explicit ``gap`` event otherwise), and always the current book. A sample of what a books client receives::

    retry: 1000

    id: 18c2a9f3e1d-42
    event: book
    data: {"instrument_id":17077,"sequence":1234,"ts_recv":1703545212345678901,"bids":[[4810250000000,12,3]],...}

    : heartbeat

The hub is transport-free: :meth:`Hub.serve` writes through a callable, so it is tested without a server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.output import OutputSink
from streams.publisher import Output, OutputTopics
from streams.sse_state import (
    BOOKS,
    DRAIN_POLL_S,
    LOW_WATER,
    STREAMS,
    TICK_S,
    TRADES,
    Buckets,
    Client,
    ClientSocket,
    Feed,
    LiveConfig,
    Snapshot,
    StreamError,
    Totals,
    event,
    parse_event_id,
    resolve,
)

__all__ = ["BOOKS", "STREAMS", "TRADES", "Hub", "HubCollector", "LiveConfig", "Snapshot", "StreamError", "TeeSink",
           "parse_event_id", "register_metrics"]

logger = logging.getLogger(__name__)

class Hub:
    """The worker's outputs, by instrument, for the SSE clients; see the module docstring."""

    def __init__(self, topics: OutputTopics, snapshot: Snapshot, config: LiveConfig | None = None) -> None:
        self.config = config or LiveConfig()
        self.snapshot = snapshot
        self.epoch = format(time.time_ns() // 1_000_000, "x")
        self.feeds: dict[bytes, Feed] = {}
        self.clients: set[Client] = set()
        self.kinds = {topics.bbo: "bbo", topics.mbp10: "mbp10", topics.trades: "trade",
                      topics.anomalies: "anomaly"}
        self.totals = Totals()
        self.fanout = Buckets("orderflow_stream_fanout_seconds", "an output handed to the hub to its event "
                              "written to a client's socket")
        self.pass_seconds = Buckets("orderflow_stream_pass_seconds", "one fan-out pass: every client of the "
                                    "instruments changed since the last pass written to")
        self.closing = False
        self.dirty: set[Feed] = set()  # feeds with news for their clients since the last fan-out pass
        self._scheduled = False
        self._ticker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ producer side

    def feed(self, instrument: int) -> Feed:
        key = str(instrument).encode()
        found = self.feeds.get(key)
        if found is None:
            found = self.feeds[key] = Feed(instrument, self.config.trade_ring)
        return found

    def publish(self, outputs: Sequence[Output]) -> None:
        """Take a frame's outputs (topic, key, JSON value); the clients of the instruments they touch are written
        to in one pass once the agent yields (the outputs of a burst of frames go out together)."""
        kinds, now, dirty = self.kinds, time.perf_counter(), self.dirty
        changed: set[Feed] = set()  # books changed by these outputs: one new version each
        for topic, key, value in outputs:
            kind = kinds.get(topic)
            if kind is None or key is None:
                continue
            feed = self.feeds.get(key)
            if feed is None:
                feed = self.feed(int(key))
            if kind == "trade":
                feed.trades.add(feed.trades.last + 1, now, value)
            elif kind == "anomaly":
                feed.book_seq += 1
                feed.anomalies.add(feed.book_seq, now, value)
            else:
                changed.add(feed)
            if feed.clients:
                dirty.add(feed)
        for feed in changed:
            feed.book_version(now)
        if dirty and not self._scheduled:
            try:
                asyncio.get_running_loop().call_soon(self._fan_out)
                self._scheduled = True
            except RuntimeError:  # no loop (a unit test): clients collect when they are served
                pass

    def _fan_out(self) -> None:
        """Write what is new to every client of the changed instruments, except those whose socket is full."""
        self._scheduled = False
        started, cpu = time.perf_counter(), time.thread_time()
        dirty, self.dirty = self.dirty, set()
        written = 0
        for feed in dirty:
            for client in list(feed.clients):
                if not client.blocked and not client.dead and client.socket is not None:
                    written += self._send(client, client.socket)
        self.pass_seconds.observe(time.perf_counter() - started)
        self.totals.pass_cpu_s += time.thread_time() - cpu
        self.totals.pass_writes += written

    def _send(self, client: Client, sock: ClientSocket) -> bool:
        """Write what ``client`` has not been sent; True when there was something."""
        payload, started = self._collect(client)
        if not payload:
            return False
        try:
            room = sock.write(payload)
        except (ConnectionError, RuntimeError, OSError) as e:
            logger.debug("stream client gone: %s", e)
            client.dead = True
            resolve(client.wake)
            return True
        client.last_write = time.monotonic()
        if started is not None:
            self.fanout.observe(time.perf_counter() - started)
        if not room:  # its task waits for the socket to drain; the fan-out passes skip it meanwhile
            client.blocked = True
            client.writing_since = client.last_write
            resolve(client.wake)
        return True

    # ------------------------------------------------------------------ client side

    def subscribe(self, stream: str, instrument: int, last_event_id: str | None = None, depth: int = 10,
                  backfill: int = 0) -> tuple[Client, bytes]:
        """A new client and the first bytes to send it (retry interval, resume or backfill)."""
        if stream not in STREAMS:
            raise StreamError(f"unknown stream {stream!r}; expected one of {', '.join(STREAMS)}")
        feed = self.feed(instrument)
        resumed = parse_event_id(last_event_id, self.epoch)
        ring = feed.trades
        if resumed is not None:
            cursor = resumed
        elif stream == TRADES:
            cursor = max(feed.trades.first - 1, feed.trades.last - max(0, backfill))
        else:
            cursor = 0  # a new books client gets the anomalies still in the ring, then the book
        client = Client(stream, feed, cursor, depth)
        if stream == BOOKS:
            client.versions_seen = -1  # the current book goes out first, whatever its version
        self.clients.add(client)
        self.totals.connections[stream] += 1
        head = b"retry: 1000\n\n"
        if last_event_id and resumed is None:
            head += event("reset", b'{"reason":"the worker restarted since this id; state starts afresh"}')
        if stream == TRADES and resumed is not None and resumed + 1 < ring.first and resumed < ring.last:
            missed = ring.first - resumed - 1
            client.cursor = ring.first - 1
            client.conflated += missed
            self.totals.conflated[stream] += missed
            head += event("gap", f'{{"missed":{missed},"from":{resumed + 1},"to":{ring.first - 1}}}'.encode())
        return client, head

    def unsubscribe(self, client: Client) -> None:
        if client in self.clients and client.stream == BOOKS and client.versions_seen >= 0:
            self._conflate(client, client.feed.versions - client.versions_seen)  # never to be sent now
            client.versions_seen = client.feed.versions
        self.clients.discard(client)
        client.feed.clients.discard(client)
        client.socket = None

    async def serve(self, client: Client, sock: ClientSocket) -> None:
        """Keep ``client``'s stream until it goes away (closed socket, failed write, stuck socket) or the hub
        closes: catch up after a full socket drained, send heartbeats. New data is written by the fan-out pass."""
        client.task = asyncio.current_task()
        client.socket = sock
        client.feed.clients.add(client)
        self._start_ticker()
        loop = asyncio.get_running_loop()
        heartbeat = self.config.heartbeat_s
        try:
            while not self.closing and not client.dead and not sock.closed():
                if client.blocked:
                    await self._drain(client, sock)
                elif self._send(client, sock):
                    pass
                elif time.monotonic() - client.last_write >= heartbeat:
                    if not sock.write(b": heartbeat\n\n"):
                        client.blocked = True
                        client.writing_since = time.monotonic()
                    client.last_write = time.monotonic()
                    self.totals.heartbeats += 1
                else:
                    client.wake = loop.create_future()
                    await client.wake
        except (ConnectionError, RuntimeError, OSError) as e:  # aiohttp: "Cannot write to closing transport"
            logger.debug("stream client gone: %s", e)
        finally:
            client.wake = None
            self.unsubscribe(client)

    async def _drain(self, client: Client, sock: ClientSocket) -> None:
        while sock.buffered() > LOW_WATER and not sock.closed() and not self.closing:
            await asyncio.sleep(DRAIN_POLL_S)
        client.blocked = False
        client.writing_since = None

    def _collect(self, client: Client) -> tuple[bytes, float | None]:
        """What ``client`` has not been sent yet, as one payload; the publish time of its oldest part."""
        return self._collect_books(client) if client.stream == BOOKS else self._collect_trades(client)

    def _collect_trades(self, client: Client) -> tuple[bytes, float | None]:
        feed = client.feed
        ring = feed.trades
        if client.cursor >= ring.last:
            return b"", None
        cursor, last, cached, first = feed.trade_payload
        if cursor == client.cursor and last == ring.last:  # most clients are at the same place: built once
            client.cursor = last
            self._count(client, last - cursor)
            return cached, first
        parts: list[bytes] = []
        if client.cursor + 1 < ring.first:  # fell behind the ring: say what was lost
            missed = ring.first - client.cursor - 1
            parts.append(event("gap", f'{{"missed":{missed},"from":{client.cursor + 1},'
                                      f'"to":{ring.first - 1}}}'.encode()))
            self._conflate(client, missed)
            client.cursor = ring.first - 1
        start = client.cursor
        entries = ring.after(start)
        epoch = self.epoch
        parts.extend(event("trade", data, f"{epoch}-{number}") for number, _, data in entries)
        payload = b"".join(parts)
        client.cursor = entries[-1][0]
        if not parts[0].startswith(b"event: gap") and client.cursor == ring.last:
            feed.trade_payload = (start, client.cursor, payload, entries[0][1])
        self._count(client, len(entries))
        return payload, entries[0][1]

    def _collect_books(self, client: Client) -> tuple[bytes, float | None]:
        feed = client.feed
        if 0 <= client.versions_seen == feed.versions - 1 and client.cursor >= feed.anomalies.last:
            # the usual case in a fan-out pass: one new version, no anomaly
            client.versions_seen = feed.versions
            client.cursor = feed.book_seq
            self._count(client, 1)
            return self._book_event(feed, client.depth), feed.book_times[-1][1]
        parts: list[bytes] = []
        started: float | None = None
        epoch = self.epoch
        anomalies = feed.anomalies.after(client.cursor)
        if anomalies:
            started = anomalies[0][1]
            parts.extend(event("anomaly", data, f"{epoch}-{number}") for number, _, data in anomalies)
            client.cursor = max(client.cursor, anomalies[-1][0])
            self._count(client, len(anomalies))
        if feed.versions != client.versions_seen:
            if client.versions_seen >= 0:
                self._conflate(client, max(0, feed.versions - client.versions_seen - 1))
                first = feed.first_time_after(client.cursor)
                started = first if started is None or (first is not None and first < started) else started
            client.versions_seen = feed.versions
            parts.append(self._book_event(feed, client.depth))
            self._count(client, 1)
            client.cursor = max(client.cursor, feed.book_seq)
        return b"".join(parts), started

    def _book_event(self, feed: Feed, depth: int) -> bytes:
        """The ``book`` event of the feed's current version (a ``status`` event when it is not kept), built
        once per version and depth for all clients."""
        cached = feed.snapshots.get(depth)
        if cached is not None and cached[0] == feed.book_seq:
            return cached[1]
        doc = self.snapshot(feed.instrument, depth)
        if doc is None:
            built = event("status", f'{{"instrument_id":{feed.instrument},"kept":false}}'.encode())
        else:
            built = event("book", doc, f"{self.epoch}-{feed.book_seq}")
        feed.snapshots[depth] = (feed.book_seq, built)
        return built

    def _count(self, client: Client, events: int) -> None:
        client.sent += events
        self.totals.sent[client.stream] += events

    def _conflate(self, client: Client, skipped: int) -> None:
        if skipped:
            client.conflated += skipped
            self.totals.conflated[client.stream] += skipped

    # ------------------------------------------------------------------ clock and shutdown

    def _start_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.ensure_future(self._tick_forever())

    async def _tick_forever(self) -> None:
        while not self.closing:
            await asyncio.sleep(TICK_S)
            self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        """Wake every waiting client (it checks its socket and its heartbeat); drop the ones stuck in a write."""
        for client in list(self.clients):
            since = client.writing_since
            if since is not None and now - since >= self.config.write_timeout_s and client.task is not None:
                logger.warning("stream client dropped: no write progress for %.0f s (%s, instrument %d)",
                               now - since, client.stream, client.feed.instrument)
                self.totals.timeouts += 1
                client.writing_since = None
                client.task.cancel()
            else:
                resolve(client.wake)

    async def close(self) -> None:
        """Server shutdown: end every client's stream."""
        self.closing = True
        for client in list(self.clients):
            resolve(client.wake)
        if self._ticker is not None:
            self._ticker.cancel()

    # ------------------------------------------------------------------ views

    def stats(self) -> dict[str, Any]:
        """Clients and what each holds, for ``/stream/stats``."""
        now = time.monotonic()
        clients = [{"stream": c.stream, "instrument_id": c.feed.instrument, "sent": c.sent,
                    "conflated": c.conflated, "pending": c.pending(), "cursor": c.cursor,
                    "buffered_bytes": 0 if c.socket is None else c.socket.buffered(),
                    "writing_s": None if c.writing_since is None else round(now - c.writing_since, 3),
                    "age_s": round(now - c.connected_at, 3)} for c in self.clients]
        return {"epoch": self.epoch, "clients": clients, "totals": dataclasses.asdict(self.totals),
                "instruments": sorted(f.instrument for f in self.feeds.values()),
                "rings": {str(f.instrument): {"trades": len(f.trades.entries), "anomalies": len(f.anomalies.entries)}
                          for f in self.feeds.values()}}

    def count(self, stream: str) -> int:
        return sum(1 for c in self.clients if c.stream == stream)


class HubCollector(Collector):
    """The hub's gauges and counters, read when Prometheus scrapes."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        clients = GaugeMetricFamily("orderflow_stream_clients", "connected SSE clients", labels=["stream"])
        for name, help_text, key in (("events_sent", "SSE events sent", "sent"),
                                     ("events_conflated", "events never sent because a newer state replaced them "
                                      "(book versions) or they left the ring before a slow client read them "
                                      "(trades)", "conflated"),
                                     ("connections", "SSE connections accepted", "connections")):
            family = CounterMetricFamily(f"orderflow_stream_{name}", help_text, labels=["stream"])
            for stream in STREAMS:
                family.add_metric([stream], getattr(hub.totals, key)[stream])
            yield family
        for stream in STREAMS:
            clients.add_metric([stream], hub.count(stream))
        yield clients
        yield CounterMetricFamily("orderflow_stream_write_timeouts", "clients dropped for a stuck socket",
                                  value=hub.totals.timeouts)
        yield CounterMetricFamily("orderflow_stream_pass_cpu_seconds", "CPU time spent in fan-out passes",
                                  value=hub.totals.pass_cpu_s)
        yield CounterMetricFamily("orderflow_stream_pass_writes", "client writes made by fan-out passes",
                                  value=hub.totals.pass_writes)
        yield from hub.fanout.collect()
        yield from hub.pass_seconds.collect()


def register_metrics(hub: Hub, registry: CollectorRegistry) -> None:
    registry.register(HubCollector(hub))


class TeeSink:
    """An :class:`OutputSink` that hands outputs to the producer and then to the hub."""

    def __init__(self, inner: OutputSink, hub: Hub) -> None:
        self.inner = inner
        self.hub = hub

    def send(self, outputs: Sequence[Output]) -> None:
        self.inner.send(outputs)
        try:
            self.hub.publish(outputs)
        except Exception:  # the live view must never stop the book agent
            logger.exception("live hub failed on %d outputs", len(outputs))

    async def flush(self) -> None:
        await self.inner.flush()

    async def close(self) -> None:
        await self.inner.close()
