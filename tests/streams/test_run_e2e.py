"""`orderflow run --no-wait`: stack up (already running), two workers, the sink, the features worker, tick ingest
from a fake exchange, the sample day replayed, a summary, a clean stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import psycopg
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
    sink_port, features_port, ingest_port = free_ports(3)
    run_id = os.urandom(3).hex()
    env.update({"ORDERFLOW_STREAMS_WEB_PORT": str(port), "ORDERFLOW_STREAMS_APP_ID": f"run-{run_id}",
                "ORDERFLOW_REPLAY_CONTROL_PORT": "0", "ORDERFLOW_STREAMS_SESSION_TIMEOUT_MS": "6000",
                "ORDERFLOW_SINK_METRICS_PORT": str(sink_port), "ORDERFLOW_SINK_GROUP": f"run-sink-{run_id}",
                "ORDERFLOW_FEATURES_WEB_PORT": str(features_port), "ORDERFLOW_FEATURES_APP_ID": f"run-feat-{run_id}",
                "ORDERFLOW_EXCHANGE_METRICS_PORT": str(ingest_port), "PYTHONPATH": str(REPO_ROOT)})
    done = subprocess.run([sys.executable, "-m", "streams.cli", "run", "--workers", "2", "--no-wait"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "kafka: already running" in out
    assert f"http://127.0.0.1:{port}/books" in out and f"http://127.0.0.1:{port + 1}/books" in out
    assert "kafka-console-consumer" in out and "book.bbo" in out
    assert "replay done: 68,792 records applied, lag 0 frames" in out
    assert f"http://127.0.0.1:{port}/view" in out
    assert f"http://127.0.0.1:{features_port}/features" in out and f"http://127.0.0.1:{sink_port}/metrics" in out
    assert f"http://127.0.0.1:{ingest_port}/metrics" in out
    assert "stopped 2 worker(s) and sink, features, fake exchange, ingest" in out
    with psycopg.connect(stack.pg_dsn) as conn:  # the sink stored the BBO of the day before it stopped
        assert conn.execute("select count(*) from bbo where instrument_id = 17077").fetchone()[0] > 0
