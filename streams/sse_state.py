"""The live hub's state: per-instrument feeds with their rings, clients with their cursors, event framing.

Kept apart from :mod:`streams.sse` (the hub's behaviour) so that each stays short; nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import HistogramMetricFamily, Metric

from streams.errors import StreamsError

BOOKS, TRADES = "books", "trades"
STREAMS = (BOOKS, TRADES)
ANOMALY_RING = 200  # recent anomalies kept per instrument
TIME_RING = 512  # publish times of recent book versions (fan-out latency of conflated updates)
MAX_BATCH = 500  # ring entries sent in one write
LOW_WATER = 16 * 1024  # a blocked client is written to again once its socket holds less than this
DRAIN_POLL_S = 0.02
TICK_S = 0.5  # the hub's clock: heartbeats, disconnect checks, stuck writes
FANOUT_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 5.0)

Snapshot = Callable[[int, int], bytes | None]  # (instrument, depth) -> the book document, None when not kept


class StreamError(StreamsError):
    """A bad stream request (instrument, depth, Last-Event-ID)."""


@dataclass(frozen=True)
class LiveConfig:
    heartbeat_s: float = 15.0
    trade_ring: int = 1000
    write_timeout_s: float = 30.0
    control_url: str = "http://127.0.0.1:8790"

    @classmethod
    def from_settings(cls, settings: Any) -> LiveConfig:
        url = settings.streams_control_url or f"http://127.0.0.1:{settings.replay_control_port}"
        return cls(heartbeat_s=settings.streams_sse_heartbeat_ms / 1000, trade_ring=settings.streams_sse_trade_ring,
                   write_timeout_s=settings.streams_sse_write_timeout_ms / 1000, control_url=url.rstrip("/"))


def _per_stream() -> dict[str, int]:
    return dict.fromkeys(STREAMS, 0)


@dataclass
class Totals:
    sent: dict[str, int] = field(default_factory=_per_stream)  # events
    conflated: dict[str, int] = field(default_factory=_per_stream)  # events never sent (see HubCollector)
    connections: dict[str, int] = field(default_factory=_per_stream)
    timeouts: int = 0  # clients dropped for a stuck socket
    heartbeats: int = 0
    pass_cpu_s: float = 0.0  # CPU time of the event loop's thread in fan-out passes
    pass_writes: int = 0  # client writes made by fan-out passes


class Ring:
    """Numbered entries ``(number, publish time, data)``, the newest ``size`` kept."""

    __slots__ = ("entries", "last")

    def __init__(self, size: int) -> None:
        self.entries: deque[tuple[int, float, bytes]] = deque(maxlen=size)
        self.last = 0  # number of the newest entry (0: none yet)

    def add(self, number: int, at: float, data: bytes) -> None:
        self.entries.append((number, at, data))
        self.last = number

    @property
    def first(self) -> int:
        """Number of the oldest entry kept (last + 1 when empty)."""
        return self.entries[0][0] if self.entries else self.last + 1

    def after(self, cursor: int, limit: int = MAX_BATCH) -> list[tuple[int, float, bytes]]:
        """Entries numbered above ``cursor``, oldest first, at most ``limit``."""
        entries = self.entries
        if not entries or cursor >= self.last:
            return []
        start = bisect.bisect_right(entries, cursor, key=_number)
        return [entries[i] for i in range(start, min(len(entries), start + limit))]


def _number(entry: tuple[int, float, bytes]) -> int:
    return entry[0]


class Feed:
    """One instrument's live state in the hub."""

    __slots__ = ("anomalies", "book_seq", "book_times", "clients", "instrument", "snapshots", "trade_payload",
                 "trades", "versions")

    def __init__(self, instrument: int, trade_ring: int) -> None:
        self.instrument = instrument
        self.book_seq = 0  # numbers book versions and anomalies (the books stream's ids)
        self.versions = 0  # book versions published (BBO changes, depth snapshots)
        self.book_times: deque[tuple[int, float]] = deque(maxlen=TIME_RING)
        self.anomalies = Ring(ANOMALY_RING)
        self.trades = Ring(trade_ring)
        self.snapshots: dict[int, tuple[int, bytes]] = {}  # depth -> (book_seq, the book or status event)
        self.trade_payload: tuple[int, int, bytes, float] = (-1, -1, b"", 0.0)  # cursor, last, events, first time
        self.clients: set[Client] = set()  # connected to a socket

    def book_version(self, at: float) -> None:
        self.book_seq += 1
        self.versions += 1
        self.book_times.append((self.book_seq, at))

    def first_time_after(self, cursor: int) -> float | None:
        """Publish time of the first book version numbered above ``cursor`` (or the oldest one remembered)."""
        times = self.book_times
        if not times or times[-1][0] <= cursor:
            return None
        i = bisect.bisect_right(times, cursor, key=lambda entry: entry[0])
        return times[min(i, len(times) - 1)][1]


class Client:
    """One connected SSE client: cursors and counters, never a queue."""

    __slots__ = ("blocked", "conflated", "connected_at", "cursor", "dead", "depth", "feed", "last_write", "sent",
                 "socket", "stream", "task", "versions_seen", "wake", "writing_since")

    def __init__(self, stream: str, feed: Feed, cursor: int, depth: int) -> None:
        self.stream = stream
        self.feed = feed
        self.cursor = cursor  # number of the last entry (or book version) sent
        self.depth = depth
        self.versions_seen = feed.versions if stream == BOOKS else 0
        self.sent = 0
        self.conflated = 0  # book versions never sent (a newer one went instead) and trades that left the ring
        self.connected_at = time.monotonic()
        self.last_write = time.monotonic()
        self.writing_since: float | None = None  # monotonic time the socket filled up, while it stays full
        self.blocked = False  # the socket holds more than its high-water mark: wait until it drains
        self.dead = False  # a write failed: the client is gone
        self.wake: asyncio.Future[None] | None = None
        self.task: asyncio.Task[Any] | None = None
        self.socket: ClientSocket | None = None

    def pending(self) -> int:
        """Book versions or ring entries published and not yet sent to this client (counted, not held)."""
        feed = self.feed
        if self.stream == BOOKS:
            return (feed.versions - self.versions_seen) + max(0, feed.anomalies.last - self.cursor)
        return max(0, feed.trades.last - self.cursor)


class ClientSocket(Protocol):
    """Where a client's bytes go: written at once (never awaited), the backlog readable."""

    def write(self, data: bytes) -> bool:
        """Hand ``data`` to the socket now; False when it then holds more than its high-water mark."""

    def closed(self) -> bool: ...

    def buffered(self) -> int:
        """Bytes handed over and not yet taken by the client."""


def resolve(wake: asyncio.Future[None] | None) -> None:
    """Wake the client task waiting on ``wake`` (if it still waits)."""
    if wake is not None and not wake.done():
        wake.set_result(None)


def parse_event_id(raw: str | None, epoch: str) -> int | None:
    """The number in a ``Last-Event-ID`` of this hub's epoch; None when absent or from another epoch."""
    if not raw:
        return None
    head, sep, tail = raw.strip().rpartition("-")
    if not sep or head != epoch:
        return None
    try:
        number = int(tail)
    except ValueError:
        raise StreamError(f"Last-Event-ID {raw!r}: expected <epoch>-<number>") from None
    if number < 0:
        raise StreamError(f"Last-Event-ID {raw!r}: the number must not be negative")
    return number


def event(name: str, data: bytes, event_id: str | None = None) -> bytes:
    """One SSE event; ``data`` is single-line JSON."""
    head = f"id: {event_id}\nevent: {name}\ndata: " if event_id else f"event: {name}\ndata: "
    return head.encode() + data + b"\n\n"


class Buckets:
    """A histogram observed once per client write: bucket counts in a list, no lock (the event loop's thread is
    the only writer), exported by :class:`HubCollector` (prometheus_client's Histogram costs ~2 µs an observation)."""

    def __init__(self, name: str, documentation: str, bounds: tuple[float, ...] = FANOUT_BUCKETS) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation)
        cumulative, buckets = 0, []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric([], buckets, self.sum)
        yield family
