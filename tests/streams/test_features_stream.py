"""``/stream/features/{instrument}`` over real HTTP (an aiohttp server on loopback, an HTTP client reading the
event stream): the latest bars document with the newest bar's ts_event as id, a new event when bars close,
``Last-Event-ID`` resuming without a repeat, heartbeats, and the client gauge back at 0 after a disconnect."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from streams import features_stream
from streams.features_group import GroupKeeper
from streams.features_stream import BarSignal, FeatureStreams
from tests.streams.features_support import recorded_events, split
from tests.streams.test_features_group import FEATURES, REGIME, TOPICS, Feed

pytestmark = pytest.mark.integration


async def read_event(resp: aiohttp.ClientResponse, timeout: float = 5.0) -> dict[str, str]:
    """The next event (comment lines and the retry line skipped) as {field: value}."""
    fields: dict[str, str] = {}
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), timeout)).decode().rstrip("\n")
        if line == "":
            if "data" in fields:
                return fields
            continue
        if line.startswith(":") or line.startswith("retry:"):
            continue
        name, _, value = line.partition(": ")
        fields[name] = value


async def serve(keeper: GroupKeeper, heartbeat_s: float = 30.0) -> tuple[web.AppRunner, str, FeatureStreams,
                                                                          BarSignal]:
    app = web.Application()
    signal = BarSignal()
    views = features_stream.register(app, keeper, signal, CollectorRegistry(), heartbeat_s)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", views, signal


def half_fed() -> tuple[GroupKeeper, Feed, str]:
    events = recorded_events()
    by_topic = split(TOPICS, events)
    keeper = GroupKeeper(TOPICS, FEATURES, REGIME)
    keeper.assign(0, None)
    feed = Feed(by_topic, keeper, seed=3)
    feed.run(steps=sum(len(v) for v in by_topic.values()) // 2)
    group = keeper.groups[0]
    instrument = sorted(group.engine.slots)[0]
    return keeper, feed, instrument


def test_stream_sends_the_latest_bars_then_each_new_close_and_resumes_by_id() -> None:
    keeper, feed, instrument = half_fed()

    async def scenario() -> None:
        runner, base, views, signal = await serve(keeper)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{base}/stream/features/{instrument}") as resp:
                    assert resp.headers["Content-Type"].startswith("text/event-stream")
                    first = await read_event(resp)
                    doc = json.loads(first["data"])
                    assert first["event"] == "bars" and doc["instrument"] == instrument
                    assert int(first["id"]) == max(b["ts_event"] for b in doc["bars"].values())
                    feed.run()  # the rest of the session: more bars close
                    feed.finish()
                    signal.pulse()
                    second = await read_event(resp)
                    assert int(second["id"]) > int(first["id"])
                    assert views.clients._value.get() == 1
                # a reconnect with the latest id gets nothing until a newer bar closes: only a heartbeat
                headers = {"Last-Event-ID": second["id"]}
                async with session.get(f"{base}/stream/features/{instrument}", headers=headers) as resp:
                    signal.pulse()  # a wake-up without a newer bar sends nothing
                    with pytest.raises(asyncio.TimeoutError):
                        await read_event(resp, timeout=0.5)
                # an older id gets the current document at once
                headers = {"Last-Event-ID": first["id"]}
                async with session.get(f"{base}/stream/features/{instrument}", headers=headers) as resp:
                    assert (await read_event(resp))["id"] == second["id"]
            for _ in range(50):  # the server notices the closed connections
                if views.clients._value.get() == 0:
                    break
                await asyncio.sleep(0.05)
            assert views.clients._value.get() == 0
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_an_idle_stream_gets_heartbeats_and_a_bad_id_is_refused() -> None:
    keeper = GroupKeeper(TOPICS, FEATURES, REGIME)
    keeper.assign(0, None)

    async def scenario() -> None:
        runner, base, _, _ = await serve(keeper, heartbeat_s=0.1)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{base}/stream/features/nothing-here") as resp:
                    lines = [await asyncio.wait_for(resp.content.readline(), 2.0) for _ in range(4)]
                    assert b": heartbeat\n" in lines
                async with session.get(f"{base}/stream/features/x", headers={"Last-Event-ID": "soon"}) as resp:
                    assert resp.status == 400
                    body: Any = await resp.json()
                    assert "Last-Event-ID" in body["error"]
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
