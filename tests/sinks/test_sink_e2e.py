"""`orderflow sink` as a subprocess against the session's real Kafka and PostgreSQL: one row per BBO update,
dead letters, kill -9 and restart, a 30-second PostgreSQL outage. Nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from ops.stack import postgres
from ops.stack.layout import Layout
from ops.stack.testing import LocalStack, free_ports
from sinks import samples, tables
from sinks.store import truncate_ts
from topics import codec
from topics.records import BboUpdate, DeadLetter

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


class SinkProcess:
    """`orderflow sink` in a subprocess, its log in a file, its /metrics and /health on ``port``."""

    def __init__(self, stack: LocalStack, dsn: str, topic: str, dead: str, group: str, log: Path,
                 *extra: str) -> None:
        self.port = free_ports(1)[0]
        cmd = [sys.executable, "-m", "streams.cli", "--log-format", "json", "sink", "--topic", f"bbo={topic}",
               "--group", group, "--dead-letter-topic", dead, "--dsn", dsn, "--metrics-port", str(self.port),
               "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", *extra]
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=stack.env(), stdout=out, stderr=subprocess.STDOUT)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def health(self) -> dict[str, Any]:
        code, body = self.get("/health")
        return json.loads(body) if code else {}

    def metric(self, name: str) -> float | None:
        _, body = self.get("/metrics")
        for line in body.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(30)


@pytest.fixture
def run_sink(stack: LocalStack, migrated_dsn: str, tmp_path: Path) -> Iterator[Callable[..., SinkProcess]]:
    started: list[SinkProcess] = []

    def start(topic: str, dead: str, group: str, *extra: str) -> SinkProcess:
        proc = SinkProcess(stack, migrated_dsn, topic, dead, group, tmp_path / "sink.log", *extra)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.kill9()


def wait_until(condition: Callable[[], bool], what: str, procs: Sequence[SinkProcess] = (),
               limit_s: float = 180.0) -> None:
    """Poll ``condition``; a guard deadline turns a hang into a failure that shows the sink's log."""
    deadline = time.monotonic() + limit_s
    while not condition():
        for p in procs:
            if p.proc.poll() is not None:
                raise AssertionError(f"the sink exited ({p.proc.returncode}) while waiting for {what}:\n"
                                     + p.log.read_text()[-3000:])
        if time.monotonic() > deadline:
            logs = "\n".join(p.log.read_text()[-3000:] for p in procs)
            raise AssertionError(f"gave up waiting for {what}\n{logs}")
        time.sleep(0.05)


def count(dsn: str) -> int:
    with psycopg.connect(dsn, connect_timeout=3) as conn:
        row = conn.execute("SELECT count(*) FROM bbo").fetchone()
    return int(row[0]) if row else 0


def stored_rows(dsn: str) -> list[tuple]:
    from sinks.pgstore import PgStore

    store = PgStore(dsn)
    try:
        return store.fetch("bbo")
    finally:
        store.close()


def expected(records: list[BboUpdate]) -> list[tuple]:
    rows = [truncate_ts(tables.BBO, tables.BBO.rows_of(r)[0]) for r in records]
    return sorted(rows, key=lambda r: tuple((v is None, v) for v in tables.BBO.key_of(r)))


def read_all(bootstrap: str, topic: str, n: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{os.urandom(4).hex()}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(out) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None and msg.value() is not None:
            out.append(msg.value() or b"")
    consumer.close()
    return out


def test_the_sink_stores_one_row_per_bbo_update_and_dead_letters_the_rest(
        stack: LocalStack, migrated_dsn: str, new_topic: Callable[..., str], run_sink: Callable[..., SinkProcess],
) -> None:
    topic, dead = new_topic(partitions=4), new_topic(partitions=1)
    records = samples.bbo_updates(20_000, instruments=8)
    bad = [(b"1001", b"{not json"), (b"1002", b'{"publisher_id": 1, "instrument_id": 5}'),
           (b"1003", codec.encode(records[0]).replace(b'"bid_sz":', b'"bid_sz":-'))]
    samples.produce(stack.bootstrap_servers, topic, samples.encoded(records[:10_000]))
    samples.produce(stack.bootstrap_servers, topic, bad)
    samples.produce(stack.bootstrap_servers, topic, samples.encoded(records[10_000:]))
    sink = run_sink(topic, dead, "e2e", "--idle-exit", "2")
    assert sink.proc.wait(300) == 0, sink.log.read_text()[-3000:]
    assert stored_rows(migrated_dsn) == expected(records)
    letters = [codec.decode(DeadLetter, v) for v in read_all(stack.bootstrap_servers, dead, 3)]
    assert sorted(letter.value for letter in letters) == sorted(v for _, v in bad)
    by_value = {letter.value: letter for letter in letters}
    assert "not valid JSON" in by_value[bad[0][1]].reason
    assert "$.ts_event" in by_value[bad[1][1]].reason
    assert "$.bid_sz" in by_value[bad[2][1]].reason
    for letter in letters:
        assert letter.topic == topic and letter.stage == "sink" and letter.offset >= 0 and letter.partition >= 0
    assert "offset" in sink.log.read_text() and "dead letter" in sink.log.read_text()


def test_kill_9_mid_stream_then_restart_loses_and_duplicates_nothing(
        stack: LocalStack, migrated_dsn: str, new_topic: Callable[..., str], run_sink: Callable[..., SinkProcess],
) -> None:
    topic, dead = new_topic(partitions=4), new_topic(partitions=1)
    records = samples.bbo_updates(120_000, instruments=8)
    samples.produce(stack.bootstrap_servers, topic, samples.encoded(records[:60_000]))
    first = run_sink(topic, dead, "crash", "--batch-rows", "1000", "--batch-ms", "20")
    wait_until(lambda: count(migrated_dsn) >= 5_000, "the first rows to be stored", [first])
    first.kill9()
    at_kill = count(migrated_dsn)
    assert 0 < at_kill < 60_000, "the sink must be killed mid-stream"
    samples.produce(stack.bootstrap_servers, topic, samples.encoded(records[60_000:]))
    second = run_sink(topic, dead, "crash", "--batch-rows", "1000", "--batch-ms", "20")
    wait_until(lambda: count(migrated_dsn) >= len(records), "every row to be stored", [second])
    wait_until(lambda: (second.metric("orderflow_sink_pending_rows") == 0
                        and sum_lag(second) == 0), "offsets to be committed", [second])
    assert second.stop() == 0
    assert stored_rows(migrated_dsn) == expected(records)


def sum_lag(sink: SinkProcess) -> float:
    _, body = sink.get("/metrics")
    lags = [float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
            if line.startswith("orderflow_sink_lag_messages{")]
    return sum(lags) if lags else -1.0


@pytest.mark.slow
def test_a_30_second_postgres_outage_pauses_the_sink_which_then_catches_up(
        stack: LocalStack, migrated_dsn: str, new_topic: Callable[..., str], run_sink: Callable[..., SinkProcess],
) -> None:
    topic, dead = new_topic(partitions=4), new_topic(partitions=1)
    records = samples.bbo_updates(80_000, instruments=8)
    samples.produce(stack.bootstrap_servers, topic, samples.encoded(records[:40_000]))
    sink = run_sink(topic, dead, "outage", "--batch-rows", "1000", "--batch-ms", "20")
    wait_until(lambda: count(migrated_dsn) >= 2_000, "the first rows to be stored", [sink])
    bindir, layout = postgres.find_bin(stack.settings), Layout.of(stack.settings)
    postgres.stop(bindir, layout)
    try:
        samples.produce(stack.bootstrap_servers, topic, samples.encoded(records[40_000:]))
        wait_until(lambda: sink.health().get("writer") == "retrying", "the sink to notice the outage", [sink])
        wait_until(lambda: sink.metric("orderflow_sink_paused") == 1, "the consumer to pause", [sink])
        assert sink.get("/health")[0] == 503
        time.sleep(30)  # the outage lasts 30 s; the sink keeps retrying meanwhile
        assert sink.proc.poll() is None
    finally:
        postgres.start(bindir, stack.settings, layout, postgres.timescaledb_enabled(stack.settings, bindir))
    wait_until(lambda: count(migrated_dsn) >= len(records), "the sink to catch up", [sink])
    wait_until(lambda: sink.metric("orderflow_sink_paused") == 0 and sink.health().get("status") == "ok",
               "the sink to resume", [sink])
    assert (sink.metric("orderflow_sink_retries_total") or 0) >= 1
    assert sink.stop() == 0
    assert stored_rows(migrated_dsn) == expected(records)
