"""The live hub without a server: conflation, rings and gaps, Last-Event-ID, heartbeats, stuck writes, shutdown."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from streams.output import MemorySink
from streams.publisher import OutputTopics
from streams.sse import BOOKS, TRADES, Hub, LiveConfig, StreamError, TeeSink, parse_event_id

pytestmark = pytest.mark.unit

TOPICS = OutputTopics()
KEY = b"17077"


def snapshot(instrument: int, depth: int) -> bytes | None:
    return json.dumps({"instrument_id": instrument, "depth": depth}).encode() if instrument == 17077 else None


def trade(n: int) -> tuple[str, bytes, bytes]:
    return (TOPICS.trades, KEY, json.dumps({"n": n}).encode())


def bbo(n: int) -> tuple[str, bytes, bytes]:
    return (TOPICS.bbo, KEY, json.dumps({"bbo": n}).encode())


def anomaly(kind: str) -> tuple[str, bytes, bytes]:
    return (TOPICS.anomalies, KEY, json.dumps({"kind": kind}).encode())


def parse(payload: bytes) -> list[dict[str, str]]:
    events = []
    for block in payload.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
                      and ": " in line)
        if "event" in fields:
            events.append(fields)
    return events


def test_a_book_client_gets_the_latest_state_and_the_skipped_versions_are_counted() -> None:
    # Arrange
    hub = Hub(TOPICS, snapshot)
    client, _ = hub.subscribe(BOOKS, 17077)
    first, _ = hub._collect(client)
    # Act: ten versions while the client is busy, then it collects once
    for n in range(10):
        hub.publish([bbo(n)])
    payload, started = hub._collect(client)
    # Assert
    events = parse(payload)
    assert [e["event"] for e in parse(first)] == ["book"]  # a new client gets the current book first
    assert [e["event"] for e in events] == ["book"]
    assert events[0]["id"] == f"{hub.epoch}-10"
    assert client.conflated == 9 and hub.totals.conflated[BOOKS] == 9
    assert started is not None and client.pending() == 0


def test_an_instrument_this_worker_does_not_keep_gets_a_status_event() -> None:
    hub = Hub(TOPICS, snapshot)
    client, _ = hub.subscribe(BOOKS, 99)
    events = parse(hub._collect(client)[0])
    assert [(e["event"], json.loads(e["data"])) for e in events] == [("status", {"instrument_id": 99, "kept": False})]


def test_anomalies_go_out_in_order_before_the_book() -> None:
    hub = Hub(TOPICS, snapshot)
    client, _ = hub.subscribe(BOOKS, 17077)
    hub.publish([bbo(1), anomaly("crossed"), bbo(2), anomaly("uncrossed")])
    events = parse(hub._collect(client)[0])
    assert [(e["event"], e["id"]) for e in events] == [
        ("anomaly", f"{hub.epoch}-2"), ("anomaly", f"{hub.epoch}-4"), ("book", f"{hub.epoch}-4")]


def test_a_trade_client_that_falls_behind_the_ring_is_told_what_it_missed() -> None:
    # Arrange: a ring of 5 trades
    hub = Hub(TOPICS, snapshot, LiveConfig(trade_ring=5))
    client, _ = hub.subscribe(TRADES, 17077)
    # Act
    hub.publish([trade(n) for n in range(1, 13)])
    events = parse(hub._collect(client)[0])
    # Assert: a gap event for trades 1..7, then 8..12 with their ids
    assert json.loads(events[0]["data"]) == {"missed": 7, "from": 1, "to": 7}
    assert [e["id"] for e in events[1:]] == [f"{hub.epoch}-{n}" for n in range(8, 13)]
    assert [json.loads(e["data"])["n"] for e in events[1:]] == list(range(8, 13))
    assert client.conflated == 7 and hub.totals.conflated[TRADES] == 7


def test_last_event_id_resumes_after_the_last_trade_seen() -> None:
    hub = Hub(TOPICS, snapshot)
    hub.publish([trade(n) for n in range(1, 7)])
    client, head = hub.subscribe(TRADES, 17077, last_event_id=f"{hub.epoch}-3")
    events = parse(hub._collect(client)[0])
    assert head == b"retry: 1000\n\n"
    assert [json.loads(e["data"])["n"] for e in events] == [4, 5, 6]


def test_a_last_event_id_of_another_epoch_starts_afresh_with_a_reset_event() -> None:
    hub = Hub(TOPICS, snapshot)
    hub.publish([trade(n) for n in range(1, 4)])
    client, head = hub.subscribe(TRADES, 17077, last_event_id="0abc-2", backfill=1)
    assert [e["event"] for e in parse(head)] == ["reset"]
    assert [json.loads(e["data"])["n"] for e in parse(hub._collect(client)[0])] == [3]


@pytest.mark.parametrize("raw", ["e-x", "e-", "e-1.5"])
def test_a_malformed_last_event_id_is_refused_by_name(raw: str) -> None:
    with pytest.raises(StreamError, match="Last-Event-ID"):
        parse_event_id(raw, "e")


def test_an_unknown_stream_is_refused() -> None:
    with pytest.raises(StreamError, match="unknown stream"):
        Hub(TOPICS, snapshot).subscribe("features", 17077)


def serve(hub: Hub, stream: str, write: Any, closed: Any = lambda: False) -> asyncio.Task[None]:
    client, _ = hub.subscribe(stream, 17077)
    return asyncio.ensure_future(hub.serve(client, write, closed))


def test_an_idle_client_gets_heartbeats_and_leaves_when_its_socket_closes() -> None:
    async def scenario() -> tuple[list[bytes], int]:
        hub = Hub(TOPICS, snapshot, LiveConfig(heartbeat_s=0.01))
        written: list[bytes] = []
        gone = False

        async def write(data: bytes) -> None:
            written.append(data)

        task = serve(hub, TRADES, write, lambda: gone)
        await asyncio.sleep(1.2)  # the hub's clock ticks every 0.5 s
        gone = True
        await asyncio.wait_for(task, 2.0)
        await hub.close()
        return written, len(hub.clients)

    written, left = asyncio.run(scenario())
    assert b": heartbeat\n\n" in written and left == 0


def test_a_client_stuck_in_a_write_is_dropped_after_the_timeout() -> None:
    async def scenario() -> tuple[bool, int, int]:
        hub = Hub(TOPICS, snapshot, LiveConfig(write_timeout_s=0.2))

        async def never(data: bytes) -> None:
            await asyncio.Event().wait()  # a socket that never drains

        task = serve(hub, BOOKS, never)
        await asyncio.sleep(0)
        hub.publish([bbo(1)])
        await asyncio.sleep(1.2)
        await hub.close()
        return task.done(), len(hub.clients), hub.totals.timeouts

    done, left, timeouts = asyncio.run(scenario())
    assert done and left == 0 and timeouts == 1


def test_closing_the_hub_ends_every_stream() -> None:
    async def scenario() -> tuple[bool, int]:
        hub = Hub(TOPICS, snapshot)
        written: list[bytes] = []

        async def write(data: bytes) -> None:
            written.append(data)

        tasks = [serve(hub, stream, write) for stream in (BOOKS, TRADES, TRADES)]
        await asyncio.sleep(0.05)
        await hub.close()
        await asyncio.wait_for(asyncio.gather(*tasks), 2.0)
        return all(t.done() for t in tasks), len(hub.clients)

    assert asyncio.run(scenario()) == (True, 0)


def test_the_tee_hands_outputs_to_the_producer_even_when_the_hub_fails() -> None:
    class Broken(Hub):
        def publish(self, outputs: Any) -> None:
            raise ValueError("boom")

    inner = MemorySink()
    tee = TeeSink(inner, Broken(TOPICS, snapshot))
    tee.send([trade(1)])
    assert inner.outputs == [trade(1)]
