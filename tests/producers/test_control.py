"""The playback control HTTP API in-process: JSON answers, CORS, errors; and its effect on an in-process replay."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from producers.control import ControlError, ControlServer, PlaybackControl
from producers.pacing import parse_ts
from producers.replay import Replay, ReplayOptions
from tests.producers.test_replay_loop import ListSink

pytestmark = pytest.mark.unit


def call(url: str, method: str = "GET") -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return response.status, dict(response.headers), json.loads(body) if body else None
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


@pytest.fixture
def api() -> Iterator[tuple[ControlServer, PlaybackControl]]:
    control = PlaybackControl(speed=None)
    server = ControlServer(control, lambda: {"state": "playing", "records_sent": 7}, port=0).start()
    yield server, control
    server.stop()


def test_status_is_json_with_permissive_cors(api: tuple[ControlServer, PlaybackControl]) -> None:
    server, _ = api
    status, headers, body = call(server.url + "/status")
    assert status == 200 and body == {"state": "playing", "records_sent": 7}
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Content-Type"] == "application/json"
    status, headers, _ = call(server.url + "/pause", "OPTIONS")
    assert status == 204 and "POST" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Origin"] == "*"


def test_commands_set_the_requested_state(api: tuple[ControlServer, PlaybackControl]) -> None:
    server, control = api
    assert call(server.url + "/pause", "POST")[2] == {"ok": True, "paused": True}
    assert control.paused
    assert call(server.url + "/resume", "POST")[2] == {"ok": True, "paused": False}
    assert not control.paused
    assert call(server.url + "/speed?x=10", "POST")[2] == {"ok": True, "speed": 10.0}
    assert control.speed == 10.0
    assert call(server.url + "/speed?x=max", "POST")[2] == {"ok": True, "speed": None}
    assert control.speed is None
    body = call(server.url + "/seek?ts=2023-12-25T23:30:00Z", "POST")[2]
    assert body == {"ok": True, "seek_ts": 1703547000000000000, "seek_time": "2023-12-25T23:30:00.000000000Z"}
    assert control.take_seek() == 1703547000000000000 and control.take_seek() is None


def test_bad_requests_say_what_is_wrong(api: tuple[ControlServer, PlaybackControl]) -> None:
    server, control = api
    status, headers, body = call(server.url + "/speed?x=fast", "POST")
    assert status == 400 and "speed 'fast'" in body["error"] and headers["Access-Control-Allow-Origin"] == "*"
    status, _, body = call(server.url + "/seek", "POST")
    assert status == 400 and "'ts'" in body["error"]
    status, _, body = call(server.url + "/seek?ts=soon", "POST")
    assert status == 400 and "ISO 8601" in body["error"]
    assert call(server.url + "/pause")[0] == 405
    assert call(server.url + "/rewind", "POST")[0] == 404
    assert control.speed is None and not control.seek_pending


def test_a_taken_port_is_a_clear_error(api: tuple[ControlServer, PlaybackControl]) -> None:
    server, control = api
    with pytest.raises(ControlError, match="--control-port"):
        ControlServer(control, dict, port=server.port)


def wait_for(predicate: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_pause_seek_speed_resume_on_a_running_replay(esh4: Path, esh4_rows: tuple[Any, ...]) -> None:
    """Paced at the recorded pace from the busy hour; paused, moved back, then let run to the end at full speed."""
    start = parse_ts("2023-12-25T23:00:00Z")
    seek = parse_ts("2023-12-25T22:58:00Z")  # backward: the records from here on are sent again
    sink = ListSink()
    control = PlaybackControl(speed=1.0)
    replay = Replay(ReplayOptions(files=[str(esh4)], speed=1.0, start_ns=start, progress=False, linger_s=0.001),
                    sink, control)
    server = ControlServer(control, replay.status, port=0).start()
    thread = threading.Thread(target=replay.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: replay.status()["records_read"] >= 50, "records to flow")
        call(server.url + "/pause", "POST")
        wait_for(lambda: replay.status()["state"] == "paused", "the pause")
        before = call(server.url + "/status")[2]
        time.sleep(0.3)
        assert call(server.url + "/status")[2]["records_read"] == before["records_read"]  # nothing read while paused
        call(server.url + f"/seek?ts={seek}", "POST")
        wait_for(lambda: replay.status()["position_ts"] == seek and replay.status()["state"] == "paused", "seek")
        sent_before_seek = sink.stats.records_sent
        call(server.url + "/speed?x=max", "POST")
        call(server.url + "/resume", "POST")
        thread.join(60)
        assert not thread.is_alive()
    finally:
        server.stop()
    status = replay.status()
    assert status["state"] == "finished" and status["speed"] is None
    rows = sink.rows()
    first = [r for r in esh4_rows if r[0] >= start]
    assert rows[:sent_before_seek] == first[:sent_before_seek]
    assert rows[sent_before_seek:] == [r for r in esh4_rows if r[0] >= seek]


def test_stop_while_pacing_ends_the_replay_mid_chunk(esh4: Path, esh4_rows: tuple[Any, ...]) -> None:
    sink = ListSink()
    replay = Replay(ReplayOptions(files=[str(esh4)], speed=1.0, start_ns=parse_ts("2023-12-25T23:00:00Z"),
                                  progress=False), sink)
    thread = threading.Thread(target=replay.run, daemon=True)
    thread.start()
    wait_for(lambda: replay.status()["records_read"] >= 20, "records to flow")
    replay.stop()
    thread.join(30)
    assert not thread.is_alive() and replay.st.state == "stopping"
    assert replay.st.records_read < 8192, "stopped inside the first chunk, not at its end"
    assert sink.stats.records_sent == replay.st.records_read  # everything read went out
