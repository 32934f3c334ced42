"""SSE streams of a real worker fed by `orderflow replay` of the ESH4 session: resume with Last-Event-ID without a
gap, a client that stops reading costs bounded state, abrupt disconnects release everything."""

from __future__ import annotations

import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.streams.feed import read_all
from tests.streams.harness import Pipeline, Worker, get_json, metric, replay, wait_for
from tests.streams.sessions import ESH4
from topics.codec import decode_records, encode
from topics.records import BookTrade

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

INSTRUMENT = 17077
RECORDS = 68_792  # MBO records of the ESH4 session


class SseConnection:
    """A raw HTTP/1.0 SSE client on a socket (no chunked encoding): read events, or stop reading, or reset."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None,
                 rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{extra}\r\n"
                          .encode())
        self.buffer = b""
        self.status = int(self._line().split()[1])
        while self._line() not in (b"", b"\r"):
            pass

    def _line(self) -> bytes:
        """The next line without its newline; raises TimeoutError when none comes within the socket timeout."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the stream")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def events(self, idle_s: float = 5.0) -> Iterator[dict[str, str]]:
        """Events as they come (comments and the retry field skipped); ends after ``idle_s`` without an event
        (heartbeats do not count) or when the server closes."""
        self.sock.settimeout(min(idle_s, 0.5))
        fields: dict[str, str] = {}
        last_event = time.monotonic()
        while time.monotonic() - last_event < idle_s:
            try:
                text = self._line().decode()
            except TimeoutError:
                continue
            except (EOFError, OSError):
                return
            if text == "":
                if "event" in fields:
                    last_event = time.monotonic()
                    yield fields
                fields = {}
            elif not text.startswith(":"):
                name, _, value = text.partition(": ")
                fields[name] = value

    def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0): the abrupt way a crashed browser or a pulled cable looks."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def stream_stats(worker: Worker) -> dict[str, Any]:
    status, doc = get_json(worker.url + "/stream/stats")
    assert status == 200, f"/stream/stats answered {status}"
    return dict(doc)


def caught_up(worker: Worker) -> bool:
    text = worker.metrics()
    return metric(text, "orderflow_book_records_applied_total") >= RECORDS and \
        metric(text, "orderflow_book_consumer_lag") == 0


def replay_in_background(pipeline: Pipeline, *extra: str) -> threading.Thread:
    thread = threading.Thread(target=replay, args=(pipeline, ESH4, *extra), daemon=True)
    thread.start()
    return thread


def start_live(pipeline_factory: Any, **env: str) -> tuple[Pipeline, Worker]:
    if not ESH4.is_file():
        pytest.skip(f"{ESH4} is absent")
    pipeline: Pipeline = pipeline_factory(partitions=1, ORDERFLOW_STREAMS_SSE_TRADE_RING="100000",
                                          ORDERFLOW_STREAMS_SSE_HEARTBEAT_MS="1000", **env)
    worker = pipeline.start("w1")
    pipeline.wait_healthy(worker)
    return pipeline, worker


@pytest.fixture
def live_worker(pipeline_factory: Any) -> tuple[Pipeline, Worker]:
    return start_live(pipeline_factory)


def test_trades_resume_with_last_event_id_without_a_gap(live_worker: tuple[Pipeline, Worker]) -> None:
    # Arrange: a client reading the trades stream while the session is replayed
    pipeline, worker = live_worker
    first = SseConnection(worker.port, f"/stream/trades/{INSTRUMENT}")
    assert first.status == 200
    feeding = replay_in_background(pipeline, "--max-records", "1")  # one event per frame: a longer stream
    # Act: it reads 300 trades, drops the connection, and comes back with the last id it saw
    before = [e for _, e in zip(range(300), first.events(idle_s=60), strict=False)]
    first.reset()
    feeding.join(timeout=300)
    wait_for("the worker to apply the whole session", lambda: caught_up(worker))
    published = [encode(t) for _, _, _, value in read_all(pipeline.bootstrap, pipeline.topics.trades)
                 for t in decode_records(BookTrade, value)]  # the topic is framed; the stream sends each trade
    second = SseConnection(worker.port, f"/stream/trades/{INSTRUMENT}",
                           headers={"Last-Event-ID": before[-1]["id"]})
    after = []
    for e in second.events(idle_s=5):
        after.append(e)
        if len(before) + len(after) >= len(published):
            break
    second.reset()
    # Assert: the ids run on without a hole or a repeat, and the trades are exactly those published, in order
    got = before + after
    assert len(before) == 300 and {e["event"] for e in got} == {"trade"}
    numbers = [int(e["id"].rsplit("-", 1)[1]) for e in got]
    assert numbers == list(range(1, len(got) + 1))
    assert len(published) > 1000
    assert [e["data"].encode() for e in got] == published


def test_a_client_that_stops_reading_holds_bounded_state(pipeline_factory: Any) -> None:
    # Arrange: one client that never reads (a small receive buffer), one that reads everything; no write timeout
    # within the test (its own unit test covers it)
    # one frame per agent event: a batch of frames (streams.batching) changes the book many times between two
    # turns of the loop, and the hub would hold only the last version of each batch for the clients
    pipeline, worker = start_live(pipeline_factory, ORDERFLOW_STREAMS_SSE_WRITE_TIMEOUT_MS="600000",
                                  ORDERFLOW_STREAMS_BATCH_MAX="1")
    stuck = SseConnection(worker.port, f"/stream/books/{INSTRUMENT}?depth=200", rcvbuf=4096)
    reader = SseConnection(worker.port, f"/stream/books/{INSTRUMENT}?depth=200")
    read: list[dict[str, str]] = []
    collecting = threading.Thread(target=lambda: read.extend(reader.events(idle_s=8)), daemon=True)
    collecting.start()
    # Act: the whole session goes through
    replay(pipeline, ESH4, "--max-records", "5")
    wait_for("the worker to apply the whole session", lambda: caught_up(worker))
    collecting.join(timeout=60)
    stats = stream_stats(worker)
    # Assert: the stuck client waits for its socket to drain; what the hub holds for it is that socket's buffer
    # (bounded by the high-water mark plus one payload) and counters: the versions it missed are counted, not kept
    clients = sorted((c for c in stats["clients"] if c["stream"] == "books"), key=lambda c: c["sent"])
    assert len(clients) == 2
    slow, fast = clients
    books_read = sum(1 for e in read if e["event"] == "book")
    bytes_read = sum(len(e["data"]) for e in read)
    assert books_read > 100 and fast["sent"] >= books_read
    assert slow["writing_s"] is not None, slow
    assert slow["buffered_bytes"] < 256 * 1024 < bytes_read, (slow, bytes_read)
    assert slow["pending"] > 0 and slow["sent"] + slow["conflated"] + slow["pending"] >= books_read
    assert slow["sent"] < books_read / 2
    # once it goes away, the versions it will never get are counted as conflated
    conflated = metric(worker.metrics(), "orderflow_stream_events_conflated_total")
    stuck.reset()
    wait_for("the stuck client's versions counted as conflated",
             lambda: metric(worker.metrics(), "orderflow_stream_events_conflated_total")
             >= conflated + slow["pending"], timeout=30)
    reader.reset()


def test_a_hundred_abrupt_disconnects_leave_the_client_gauge_at_zero(live_worker: tuple[Pipeline, Worker]) -> None:
    # Arrange: 100 clients, half on each stream, connected while the session is replayed
    pipeline, worker = live_worker
    clients = [SseConnection(worker.port, f"/stream/{'books' if i % 2 else 'trades'}/{INSTRUMENT}")
               for i in range(100)]
    assert all(c.status == 200 for c in clients)
    wait_for("100 clients on the gauge", lambda: metric(worker.metrics(), "orderflow_stream_clients") == 100)
    feeding = replay_in_background(pipeline, "--max-records", "1")
    time.sleep(1.0)
    # Act: every one of them resets its connection, most while events are being written to them
    for c in clients:
        c.reset()
    # Assert: the gauge and the hub's client list return to zero; the worker still serves new clients
    wait_for("the client gauge back at 0", lambda: metric(worker.metrics(), "orderflow_stream_clients") == 0,
             timeout=30)
    assert stream_stats(worker)["clients"] == []
    feeding.join(timeout=300)
    late = SseConnection(worker.port, f"/stream/books/{INSTRUMENT}")
    assert "book" in (e["event"] for e in late.events(idle_s=10))
    late.reset()


def test_bad_stream_requests_are_refused_with_a_reason(live_worker: tuple[Pipeline, Worker]) -> None:
    _, worker = live_worker
    for path, words in (("/stream/books/abc", "numeric instrument id"),
                        (f"/stream/books/{INSTRUMENT}?depth=0", "depth must be between"),
                        (f"/stream/trades/{INSTRUMENT}?backfill=x", "backfill must be an integer")):
        status, doc = get_json(worker.url + path)
        assert status == 400 and words in doc["error"], (path, doc)
    status, doc = get_json(worker.url + "/control/status")
    assert status == 502 and "not reachable" in doc["error"]
    head = urllib.request.Request(f"{worker.url}/stream/books/{INSTRUMENT}", method="HEAD")
    with urllib.request.urlopen(head, timeout=5) as answer:  # answered at once, no stream left open
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/event-stream")
    assert stream_stats(worker)["clients"] == []
