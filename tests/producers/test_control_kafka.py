"""The playback control API of a real ``orderflow replay`` process publishing to the real broker."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from producers.pacing import parse_ts
from tests.producers.conftest import consume_all, row_of

pytestmark = pytest.mark.integration


def call(url: str, method: str = "GET") -> tuple[dict[str, str], Any]:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as response:
        return dict(response.headers), json.load(response)


def wait_status(base: str, predicate: Any, what: str, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = call(base + "/status")[1]
        if predicate(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_pause_seek_speed_resume_over_http(
    cli: Any, stack: Any, mbo_topic: str, esh4: Path, esh4_rows: tuple[tuple[Any, ...], ...],
) -> None:
    start, seek = "2023-12-25T23:00:00Z", "2023-12-25T23:40:00Z"
    run = cli("replay", str(esh4), "--topic", mbo_topic, "--speed", "1", "--start", start, "--control-port", "0",
              "--no-progress", "--linger-ms", "1")
    base = run.wait_line("playback control:").split()[-1].removesuffix("/status")
    wait_status(base, lambda s: s["records_read"] >= 50, "records to flow")

    headers, body = call(base + "/pause", "POST")
    assert body == {"ok": True, "paused": True} and headers["Access-Control-Allow-Origin"] == "*"
    paused = wait_status(base, lambda s: s["state"] == "paused", "the pause")
    time.sleep(0.5)
    assert call(base + "/status")[1]["records_read"] == paused["records_read"]

    assert call(base + f"/seek?ts={seek}", "POST")[1]["seek_ts"] == parse_ts(seek)
    after_seek = wait_status(base, lambda s: s["position_ts"] == parse_ts(seek) and s["state"] == "paused", "seek")
    assert call(base + "/speed?x=max", "POST")[1] == {"ok": True, "speed": None}
    call(base + "/resume", "POST")
    code, out = run.finish()
    assert code == 0, "".join(run.stderr)
    summary = json.loads(out.strip().splitlines()[-1])

    # a forward seek fast-forwards: everything up to the target went out at once, nothing is skipped, so the books
    # downstream stay whole
    first = [r for r in esh4_rows if r[0] >= parse_ts(start)]
    assert after_seek["records_sent"] == sum(1 for r in first if r[0] < parse_ts(seek))
    assert summary["records_delivered"] == len(first)
    messages = consume_all(stack.bootstrap_servers, mbo_topic, expect_records=summary["records_delivered"])
    rows = [row_of(r) for m in sorted(messages, key=lambda m: m.offset) for r in m.frame.records()]
    assert rows == first
