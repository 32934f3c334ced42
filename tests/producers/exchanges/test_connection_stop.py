"""A stopping ingest does not wait on a venue that keeps sending after our close frame (it would hold the close
handshake, and the process's exit, for as long as it sends)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web

from producers.exchanges import venue_class
from producers.exchanges.connection import STOP_GRACE_S, Connector

pytestmark = pytest.mark.integration  # a real WebSocket on loopback


async def chatty_venue(request: web.Request) -> web.WebSocketResponse:
    """Streams frames and never reads: a close frame from the client is never answered."""
    ws = web.WebSocketResponse(autoclose=False)
    await ws.prepare(request)
    while not ws.closed:
        await ws.send_str('{"e":"noise"}')
        await asyncio.sleep(0.01)
    return ws


async def stop_while_the_venue_keeps_sending() -> tuple[float, int]:
    app = web.Application()
    app.router.add_get("/ws", chatty_venue)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            conn = Connector(venue_class("binance")(), f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}",
                             lambda records: None, session, watchdog_s=60.0)
            stop = asyncio.Event()
            task = asyncio.create_task(conn.run(stop))
            while not conn.state.connected:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            started = time.monotonic()
            stop.set()
            await asyncio.wait_for(task, 30)
            return time.monotonic() - started, conn.state.connects
    finally:
        await runner.cleanup()


def test_a_venue_that_never_answers_our_close_is_cut_off_after_the_grace_time() -> None:
    took, connects = asyncio.run(stop_while_the_venue_keeps_sending())

    assert connects == 1
    assert took < STOP_GRACE_S + 2.0
