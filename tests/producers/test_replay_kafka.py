"""``orderflow replay`` against the real broker: every record exactly once, in order, frames on F_LAST; SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from producers.pacing import parse_ts
from tests.producers.conftest import Consumed, consume_all, row_of
from topics.records import F_LAST

pytestmark = pytest.mark.integration

WINDOW_START = "2023-12-25T23:00:00Z"  # the ESH4 session's busy hour starts here


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def consumed_rows(messages: list[Consumed]) -> dict[int, list[tuple[Any, ...]]]:
    """Records per instrument in offset order (one instrument lives in one partition)."""
    out: dict[int, list[tuple[Any, ...]]] = {}
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        out.setdefault(m.frame.instrument_id, []).extend(row_of(r) for r in m.frame.records())
    return out


def test_replay_publishes_every_record_once_in_order(
    cli: Any, stack: Any, mbo_topic: str, esh4: Path, esh4_rows: tuple[tuple[Any, ...], ...],
) -> None:
    run = cli("replay", str(esh4), "--topic", mbo_topic, "--no-control", "--no-progress")
    code, out = run.finish()
    assert code == 0, "".join(run.stderr)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["records_delivered"] == summary["records_sent"] == len(esh4_rows)
    assert summary["delivery_failures"] == 0 and summary["undelivered"] == 0

    messages = consume_all(stack.bootstrap_servers, mbo_topic, expect_records=len(esh4_rows))
    assert sum(len(m.frame) for m in messages) == len(esh4_rows)
    assert consumed_rows(messages) == {17077: list(esh4_rows)}
    assert {m.key for m in messages} == {b"17077"}
    assert len({m.partition for m in messages}) == 1
    for m in messages:  # the whole file ends on F_LAST, so every frame does
        assert m.frame.flags[-1] & F_LAST
        assert m.frame.symbol == "ESH4"
        assert len(m.frame) <= 250 or not any(f & F_LAST for f in m.frame.flags[:-1])


@pytest.mark.slow
def test_sigterm_flushes_what_was_accepted_without_duplicates(
    cli: Any, stack: Any, mbo_topic: str, esh4: Path, esh4_rows: tuple[tuple[Any, ...], ...],
) -> None:
    metrics_port = free_port()
    run = cli("replay", str(esh4), "--topic", mbo_topic, "--speed", "20", "--start", WINDOW_START,
              "--control-port", "0", "--linger-ms", "2", "--metrics-port", str(metrics_port))
    url = run.wait_line("playback control:").split()[-1]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until it is busy sending (mid-file), then stop it
        with urllib.request.urlopen(url) as response:
            status = json.load(response)
        if status["records_sent"] >= 2_000:
            break
        time.sleep(0.2)
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
        metrics = response.read().decode()
    sent = [line for line in metrics.splitlines() if line.startswith("orderflow_producer_records_sent_total{")]
    assert sent and float(sent[0].split()[-1]) >= 2_000 and 'source="replay"' in sent[0]
    assert "orderflow_producer_queue_depth" in metrics and "orderflow_producer_delivery_failures_total" in metrics
    run.proc.send_signal(signal.SIGTERM)
    code, out = run.finish()
    assert code == 0, "".join(run.stderr)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stopped"] is True
    delivered = summary["records_delivered"]
    assert delivered == summary["records_sent"] == summary["records_read"]
    window = [r for r in esh4_rows if r[0] >= parse_ts(WINDOW_START)]
    assert 2_000 <= delivered < len(window)

    messages = consume_all(stack.bootstrap_servers, mbo_topic, expect_records=delivered)
    rows = consumed_rows(messages)[17077]
    assert len(rows) == delivered
    # the file itself holds a few identical records, so "no duplicates" means: as often as in the file
    assert Counter(rows) == Counter(window[:delivered]), "no record sent twice"
    assert rows == window[:delivered], "exactly the first records of the window, in order"


def test_delivery_failures_are_reported_with_topic_and_partition_and_fail_the_run(
    cli: Any, new_topic: Any, esh4: Path,
) -> None:
    topic = new_topic(partitions=2, config={"max.message.bytes": "4000"})  # frames of 250 records are ~22 KB
    run = cli("replay", str(esh4), "--topic", topic, "--no-control", "--no-progress", "--end", "2023-12-25T23:00:01Z")
    code, out = run.finish()
    assert code == 1
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["delivery_failures"] > 0
    assert summary["records_delivered"] + summary["records_failed"] == summary["records_sent"]
    errors = [line for line in run.stderr if "delivery to" in line]
    assert errors and f"delivery to {topic} [" in errors[0] and "partition=" in errors[0]


def test_a_missing_topic_is_a_clear_error(cli: Any, esh4: Path) -> None:
    run = cli("replay", str(esh4), "--topic", "no.such.topic", "--no-control", "--no-progress")
    code, _ = run.finish()
    assert code == 1
    assert any("topic 'no.such.topic' does not exist" in line for line in run.stderr)
