"""Connectors against the fake exchange over a real WebSocket on loopback: every venue's capture streams through
the connection loop to the same records and books as the offline replay; a dropped connection reconnects within
the backoff schedule and resyncs; a gap or a corrupt checksum triggers a resync; garbage is counted and skipped;
a stalled feed trips the watchdog. Waits are bounded hang guards, never timing assertions."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from producers.exchanges import VENUES, venue_class
from producers.exchanges.base import Record, Venue
from producers.exchanges.connection import Backoff, Connector
from producers.exchanges.fake import GARBAGE, FakeConfig, FakeExchange
from producers.exchanges.replay import load, replay
from tests.producers.exchanges.support import book_state, quotes, wait_for
from topics.records import L2Update, QuoteTick, TradeTick

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # real WebSockets on loopback, whole captures streamed

SYMBOL = {"binance": ["BTCUSDT"], "binance_futures": ["BTCUSDT"]}


def comparable(records: list[Record]) -> list[Any]:
    """Records without their time stamps (receipt times differ between a replay and a live run)."""
    out = []
    for r in records:
        d = msgspec.structs.asdict(r)
        d.pop("ts_recv")
        d.pop("ts_event")
        out.append((type(r).__name__, d))
    return out


def reference(captures: Path, name: str) -> tuple[Venue, list[Record]]:
    venue = venue_class(name)(SYMBOL.get(name, []))
    symbols = SYMBOL.get(name)
    records = replay(venue, load(type(venue), captures, 0), default_symbol=symbols[0] if symbols else None)
    return venue, records


class Run:
    """What a streamed session produced: all records, and where the last connection's records start."""

    def __init__(self) -> None:
        self.out: list[Record] = []
        self.starts: list[int] = []

    def last_session(self) -> list[Record]:
        return self.out[self.starts[-1] :] if self.starts else []


Done = Callable[[Connector, Run], bool]


async def stream(
    captures: Path, name: str, config: FakeConfig, done: Done, watchdog_s: float = 10.0,
) -> tuple[Connector, FakeExchange, Run]:
    cls = venue_class(name)
    fake = FakeExchange(cls, load(cls, captures, 0), config)
    port = await fake.start(0)
    run = Run()
    venue = cls(SYMBOL.get(name, []))
    reset = venue.reset

    def marking_reset() -> None:  # a (re)connection: the next records belong to a new session
        run.starts.append(len(run.out))
        reset()

    venue.reset = marking_reset  # type: ignore[method-assign]
    stop = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as session:
            conn = Connector(venue, fake.url, f"http://127.0.0.1:{port}", run.out.extend, session,
                             watchdog_s=watchdog_s)
            task = asyncio.create_task(conn.run(stop))
            try:
                await wait_for(lambda: done(conn, run), what=f"{name} to stream its capture")
            finally:
                stop.set()
                await task
    finally:
        await fake.stop()
    return conn, fake, run


def same(got: list[Record], want: list[Record], ordered: bool) -> bool:
    a, b = comparable(got), comparable(want)
    return a == b if ordered else sorted(map(repr, a)) == sorted(map(repr, b))


def finished(expected: Venue, records: list[Record], connects: int = 1) -> Done:
    """Done when the connection count is reached and the last session produced what the replay did."""
    want_books = book_state(expected)
    # how many book updates a REST-snapshot venue publishes depends on when its snapshot was taken: not counted
    ticks = (TradeTick, QuoteTick) if type(expected).resync_how == "snapshot" else (TradeTick, QuoteTick, L2Update)
    want = Counter(type(r) for r in records if isinstance(r, ticks))

    def check(conn: Connector, run: Run) -> bool:
        session = run.last_session()
        return (conn.state.connects >= connects and len(session) >= sum(want.values())
                and Counter(type(r) for r in session if isinstance(r, ticks)) == want
                and book_state(conn.venue) == want_books)

    return check


@pytest.mark.parametrize("name", sorted(VENUES))
def test_capture_streams_like_the_replay(captures: Path, name: str) -> None:
    expected, records = reference(captures, name)
    conn, fake, run = asyncio.run(stream(captures, name, FakeConfig(speed=0), finished(expected, records)))
    assert same(run.out, records, ordered=venue_class(name).resync_how != "snapshot")
    assert conn.state.connects == 1 and conn.venue.stats.reconnects == 0
    assert fake.stats.connections == 1
    # messages read together still get distinct receipt times: no two quotes share the sink's natural key
    keys = [(q.symbol, q.ts_event, q.ts_recv) for q in quotes(run.out)]
    assert len(set(keys)) == len(keys)


def test_dropped_connection_reconnects_within_backoff_and_resyncs(captures: Path) -> None:
    expected, records = reference(captures, "binance_futures")
    cfg = FakeConfig(speed=0, misbehave=["drop"], after=3000)
    conn, fake, _run = asyncio.run(stream(captures, "binance_futures", cfg, finished(expected, records, 2)))
    assert fake.stats.done == {"drop": 1}
    assert conn.state.connects == 2 and conn.venue.stats.reconnects == 1
    assert conn.state.delays and conn.state.delays[0] <= Backoff().ceiling(0)  # first step of the schedule
    assert conn.venue.stats.snapshots == 2  # the book was rebuilt from a fresh snapshot after reconnecting
    assert fake.stats.rest_requests >= 2
    assert book_state(conn.venue) == book_state(expected)


@pytest.mark.parametrize("name", ["binance_futures", "binance"])
def test_sequence_gap_refetches_snapshot_without_reconnecting(captures: Path, name: str) -> None:
    expected, records = reference(captures, name)
    cfg = FakeConfig(speed=0, misbehave=["gap"], after=2000)
    conn, fake, run = asyncio.run(stream(captures, name, cfg, finished(expected, records)))
    st = conn.venue.stats
    assert fake.stats.done == {"gap": 1}
    assert st.gaps == 1 and st.resyncs == 1 and st.snapshots == 2
    assert conn.state.connects == 1
    assert book_state(conn.venue) == book_state(expected)  # resynced onto the venue's true book
    trades = [r for r in run.out if isinstance(r, TradeTick)]
    assert len(trades) == st.trades == len([r for r in records if isinstance(r, TradeTick)])


@pytest.mark.parametrize("name", ["kraken", "okx"])
def test_corrupt_checksum_resyncs_by_reconnecting(captures: Path, name: str) -> None:
    expected, records = reference(captures, name)
    cfg = FakeConfig(speed=0, misbehave=["bad-checksum"], after=100)
    conn, fake, _ = asyncio.run(stream(captures, name, cfg, finished(expected, records, 2)))
    st = conn.venue.stats
    assert fake.stats.done == {"bad-checksum": 1}
    assert st.checksum_failures == 1 and st.resyncs == 1 and conn.state.connects == 2
    assert book_state(conn.venue) == book_state(expected)


def test_deribit_gap_resyncs_by_reconnecting(captures: Path) -> None:
    expected, records = reference(captures, "deribit")
    cfg = FakeConfig(speed=0, misbehave=["gap"], after=60)
    conn, fake, _ = asyncio.run(stream(captures, "deribit", cfg, finished(expected, records, 2)))
    assert fake.stats.done == {"gap": 1}
    assert conn.venue.stats.gaps == 1 and conn.state.connects == 2
    assert book_state(conn.venue) == book_state(expected)


def test_garbage_frames_are_counted_and_skipped(captures: Path) -> None:
    expected, records = reference(captures, "okx")
    cfg = FakeConfig(speed=0, misbehave=["garbage"], after=50)
    conn, fake, run = asyncio.run(stream(captures, "okx", cfg, finished(expected, records)))
    st = conn.venue.stats
    assert fake.stats.done == {"garbage": 1}
    assert st.malformed + st.unknown == len(GARBAGE) and st.malformed >= len(GARBAGE) - 1
    assert conn.state.connects == 1
    assert same(run.out, records, ordered=True)  # the real frames around the garbage all made it


def test_stalled_feed_trips_the_watchdog(captures: Path) -> None:
    expected, records = reference(captures, "okx")
    cfg = FakeConfig(speed=0, misbehave=["stall"], after=50)
    conn, fake, _ = asyncio.run(stream(captures, "okx", cfg, finished(expected, records, 2), watchdog_s=0.5))
    assert fake.stats.done == {"stall": 1}
    assert conn.state.watchdog_fired == 1 and conn.state.connects == 2
    assert "no message" in conn.state.last_error
    assert book_state(conn.venue) == book_state(expected)


def test_connection_refused_backs_off_exponentially() -> None:
    async def go() -> Connector:
        stop = asyncio.Event()
        async with aiohttp.ClientSession() as session:
            conn = Connector(venue_class("okx")(), "ws://127.0.0.1:9/ws", "http://127.0.0.1:9", lambda r: None,
                             session, backoff=Backoff(base=0.01, cap=0.04))
            task = asyncio.create_task(conn.run(stop))
            await wait_for(lambda: len(conn.state.delays or []) >= 5, what="five reconnection attempts")
            stop.set()
            await task
        return conn

    conn = asyncio.run(go())
    b = Backoff(base=0.01, cap=0.04)
    delays = conn.state.delays or []
    for attempt, d in enumerate(delays[:5], start=1):
        assert b.ceiling(attempt) * (1 - b.jitter) <= d <= b.ceiling(attempt)
    assert conn.venue.stats.reconnects >= 5 and not conn.state.connected
