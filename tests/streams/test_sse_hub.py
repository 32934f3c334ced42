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
    hub.publish([bbo(1), anomaly("crossed"), bbo(2), anomaly("uncrossed")])  # one frame: one book version
    events = parse(hub._collect(client)[0])
    assert [(e["event"], e["id"]) for e in events] == [
        ("anomaly", f"{hub.epoch}-1"), ("anomaly", f"{hub.epoch}-2"), ("book", f"{hub.epoch}-3")]


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


class FakeSocket:
    """A client socket: records what is written; ``full`` makes it report a backlog that never drains."""

    def __init__(self, full: bool = False) -> None:
        self.written: list[bytes] = []
        self.full = full
        self.gone = False

    def write(self, data: bytes) -> bool:
        if self.gone:
            raise ConnectionResetError("gone")
        self.written.append(data)
        return not self.full

    def closed(self) -> bool:
        return self.gone

    def buffered(self) -> int:
        return 10**6 if self.full else 0


def serve(hub: Hub, stream: str, sock: FakeSocket) -> asyncio.Task[None]:
    client, _ = hub.subscribe(stream, 17077)
    return asyncio.ensure_future(hub.serve(client, sock))


def test_the_fan_out_pass_writes_new_events_to_every_client_once_the_publisher_yields() -> None:
    async def scenario() -> list[list[str]]:
        hub = Hub(TOPICS, snapshot)
        socks = [FakeSocket() for _ in range(3)]
        tasks = [serve(hub, TRADES, sock) for sock in socks]
        await asyncio.sleep(0.01)
        hub.publish([trade(1), trade(2)])
        hub.publish([trade(3)])
        await asyncio.sleep(0)  # the pass runs in the next loop iteration
        seen = [[e["id"] for e in parse(b"".join(sock.written))] for sock in socks]
        await hub.close()
        await asyncio.gather(*tasks)
        return seen

    for seen in asyncio.run(scenario()):
        assert [event_id.rsplit("-", 1)[1] for event_id in seen] == ["1", "2", "3"]


def test_an_idle_client_gets_heartbeats_and_leaves_when_its_socket_closes() -> None:
    async def scenario() -> tuple[list[bytes], int]:
        hub = Hub(TOPICS, snapshot, LiveConfig(heartbeat_s=0.01))
        sock = FakeSocket()
        task = serve(hub, TRADES, sock)
        await asyncio.sleep(1.2)  # the hub's clock ticks every 0.5 s
        sock.gone = True
        await asyncio.wait_for(task, 2.0)
        await hub.close()
        return sock.written, len(hub.clients)

    written, left = asyncio.run(scenario())
    assert b": heartbeat\n\n" in written and left == 0


def test_a_client_whose_socket_stays_full_is_dropped_after_the_timeout() -> None:
    async def scenario() -> tuple[bool, int, int, int]:
        hub = Hub(TOPICS, snapshot, LiveConfig(write_timeout_s=0.2))
        sock = FakeSocket(full=True)
        task = serve(hub, BOOKS, sock)
        await asyncio.sleep(0.01)
        for n in range(5):
            hub.publish([bbo(n)])
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.2)
        await hub.close()
        return task.done(), len(hub.clients), hub.totals.timeouts, len(sock.written)

    done, left, timeouts, writes = asyncio.run(scenario())
    assert done and left == 0 and timeouts == 1
    assert writes == 1  # a full socket is not written to again until it drains


def test_closing_the_hub_ends_every_stream() -> None:
    async def scenario() -> tuple[bool, int]:
        hub = Hub(TOPICS, snapshot)
        tasks = [serve(hub, stream, FakeSocket()) for stream in (BOOKS, TRADES, TRADES)]
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
