"""`orderflow run --no-wait`: stack up (already running), two workers, the sample day replayed, a summary, a clean
stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from ops.stack.testing import LocalStack, free_ports
from tests.streams.harness import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


def two_free_ports() -> int:
    """A port p with p + 1 free too (`orderflow run` gives worker i the port p + i)."""
    while True:
        port = free_ports(1)[0]
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def test_run_replays_the_sample_day_and_stops_cleanly(stack: LocalStack) -> None:
    port = two_free_ports()
    env = stack.env()
    env.update({"ORDERFLOW_STREAMS_WEB_PORT": str(port), "ORDERFLOW_STREAMS_APP_ID": f"run-{os.urandom(3).hex()}",
                "ORDERFLOW_REPLAY_CONTROL_PORT": "0", "ORDERFLOW_STREAMS_SESSION_TIMEOUT_MS": "6000",
                "PYTHONPATH": str(REPO_ROOT)})
    done = subprocess.run([sys.executable, "-m", "streams.cli", "run", "--workers", "2", "--no-wait"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "kafka: already running" in out
    assert f"http://127.0.0.1:{port}/books" in out and f"http://127.0.0.1:{port + 1}/books" in out
    assert "kafka-console-consumer" in out and "book.bbo" in out
    assert "replay done: 68,792 records applied, lag 0 frames" in out
    assert "stopped 2 worker(s)" in out
