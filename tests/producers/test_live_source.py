"""LiveSource in-process (frames kept in a list): the quiet feed's linger, /health states, giving up on a gateway
that never answers, symbols on frames."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from producers.live.fake_gateway import DEFAULT_KEY, FakeGateway, Feed, GatewayOptions
from producers.live.source import LiveError, LiveOptions, LiveSource
from tests.producers.test_replay_loop import ListSink
from topics.records import F_LAST

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # the fake gateway is a TCP server on loopback

Rows = tuple[tuple[Any, ...], ...]


@pytest.fixture(scope="module")
def gateway(esh4: Path) -> Iterator[FakeGateway]:
    with FakeGateway(Feed.load(esh4)) as gw:
        yield gw


def options(port: int, **extra: Any) -> LiveOptions:
    return LiveOptions(key=DEFAULT_KEY, dataset="GLBX.MDP3", symbols=["ESH4"], gateway="127.0.0.1", port=port,
                       progress=False, **extra)


def wait_for(condition: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_a_quiet_feed_still_sends_every_event_within_the_linger(gateway: FakeGateway, esh4_rows: Rows) -> None:
    # Arrange: the file ends and the gateway goes quiet (heartbeats only); nothing stops the source
    sink = ListSink()
    source = LiveSource(options(gateway.port, start_ns=esh4_rows[0][1], linger_s=0.005), sink)
    thread = threading.Thread(target=source.run, daemon=True)

    # Act
    thread.start()
    wait_for(lambda: sink.stats.records_sent == len(esh4_rows))
    ok, health = source.health()
    source.stop()
    thread.join(30)

    # Assert: every record went out while the session was still open, the last frame ends on F_LAST
    assert sink.rows() == list(esh4_rows)
    assert sink.frames[-1].flags[-1] & F_LAST
    assert {f.symbol for f in sink.frames} == {"ESH4"}
    assert ok and health["state"] == "streaming" and health["records_published"] == len(esh4_rows)
    assert not thread.is_alive() and source.st.state == "stopping"
    assert source.health()[0] is False  # stopped: no longer healthy


def test_a_gateway_that_refuses_connections_is_given_up_after_max_attempts() -> None:
    # Arrange: a port nothing listens on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = LiveSource(options(port, max_attempts=3, backoff_s=0.05, backoff_max_s=0.1), ListSink())

    # Act
    with pytest.raises(LiveError) as raised:
        source.run()

    # Assert
    assert "gave up after 3 sessions in a row without a new record" in str(raised.value)
    assert f"Connection to 127.0.0.1:{port} failed" in str(raised.value)
    assert source.st.connections == 3 and source.st.state == "failed"


def test_a_drop_before_any_record_resumes_from_the_first_sessions_start(esh4: Path, esh4_rows: Rows) -> None:
    # Arrange: the first session ends before its first record; the feed moves on 1000 records meanwhile
    sink = ListSink()
    with FakeGateway(Feed.load(esh4), GatewayOptions(drop_after=[0], outage_records=1000)) as gw:
        source = LiveSource(options(gw.port, backoff_s=0.05, stop_after=len(esh4_rows)), sink)

        # Act
        source.run()

    # Assert: the second session asked for a replay from where the first one began, so nothing is missing
    assert gw.stats.starts == [None, esh4_rows[0][1]]
    assert sink.rows() == list(esh4_rows)
