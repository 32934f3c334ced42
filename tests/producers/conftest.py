"""Fixtures of the producer tests: the ESH4 file, its records as the reference, consuming frames back, running
``orderflow`` as a subprocess."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from topics import codec
from topics.records import MboFrame

REPO_ROOT = Path(__file__).resolve().parents[2]
ESH4 = "databento/nautilus/esh4-glbx-mdp3-20231225.mbo.dbn.zst"


@pytest.fixture(scope="session")
def esh4(shared_data: Path) -> Path:
    path = shared_data / ESH4
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def row_of(r: Any) -> tuple[Any, ...]:
    """A record (MboRecord or databento_dbn.MBOMsg) as a tuple of its fields, for exact comparison."""
    return (
        r.ts_recv, r.ts_event, int(r.publisher_id), r.instrument_id, str(r.action), str(r.side), r.price, r.size,
        r.channel_id, r.order_id, int(r.flags), r.ts_in_delta, r.sequence,
    )


@cache
def _file_rows(path: str) -> tuple[tuple[Any, ...], ...]:
    import databento_dbn
    import zstandard

    with open(path, "rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
    upgrade: Any = databento_dbn.VersionUpgradePolicy.UPGRADE_TO_V3
    decoder = databento_dbn.DBNDecoder(upgrade_policy=upgrade)
    decoder.write(data)
    return tuple(row_of(r) for r in decoder.decode() if isinstance(r, databento_dbn.MBOMsg))


@pytest.fixture(scope="session")
def esh4_rows(esh4: Path) -> tuple[tuple[Any, ...], ...]:
    """Every MBO record of the ESH4 file, decoded by databento_dbn (the reference)."""
    return _file_rows(str(esh4))


@dataclass
class Consumed:
    """A message read back: where it was, its key and its decoded frame."""

    partition: int
    offset: int
    key: bytes | None
    frame: MboFrame


def consume_raw(bootstrap: str, topic: str, idle_s: float = 5.0, timeout_s: float = 120.0,
                done: Callable[[list[tuple[int, int, bytes | None, bytes]]], bool] | None = None,
                ) -> list[tuple[int, int, bytes | None, bytes]]:
    """(partition, offset, key, value) of every message of ``topic`` from the beginning, until ``done(messages)``
    (then one more idle second to catch extras) or nothing came for ``idle_s``."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"test-{time.monotonic_ns()}", "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "enable.partition.eof": False,
    })
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    out: list[tuple[int, int, bytes | None, bytes]] = []
    last = time.monotonic()
    deadline = last + timeout_s
    try:
        while time.monotonic() < deadline and time.monotonic() - last < idle_s:
            if done is not None and done(out):
                idle_s = min(idle_s, 1.0)
            for msg in consumer.consume(1000, 0.2):
                if msg.error():
                    raise AssertionError(f"consume error: {msg.error()}")
                partition, offset = msg.partition(), msg.offset()
                assert partition is not None and offset is not None
                out.append((partition, offset, msg.key(), msg.value() or b""))
                last = time.monotonic()
    finally:
        consumer.close()
    return out


def consume_all(bootstrap: str, topic: str, idle_s: float = 5.0, timeout_s: float = 120.0,
                expect_records: int | None = None) -> list[Consumed]:
    """Every frame of ``topic`` from the beginning, until ``expect_records`` are read or nothing came for
    ``idle_s``."""
    decoded: dict[tuple[int, int], MboFrame] = {}

    def done(messages: list[tuple[int, int, bytes | None, bytes]]) -> bool:
        for partition, offset, _, value in messages[len(decoded):]:
            decoded[(partition, offset)] = codec.decode(MboFrame, value)
        return expect_records is not None and sum(len(f) for f in decoded.values()) >= expect_records

    messages = consume_raw(bootstrap, topic, idle_s, timeout_s, done)
    return [Consumed(p, o, k, decoded.get((p, o)) or codec.decode(MboFrame, v)) for p, o, k, v in messages]


@pytest.fixture
def mbo_topic(new_topic: Callable[..., str]) -> str:
    """A fresh topic shaped like mbo.frames (8 partitions, 8 MB messages)."""
    return new_topic(partitions=8, config={"max.message.bytes": str(8 * 1024 * 1024)})


class Cli:
    """``orderflow ARGS`` running as a subprocess; stderr lines collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "--log-format", "text", *args], cwd=REPO_ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def wait_line(self, needle: str, timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            if needle in line:
                return line
        raise AssertionError(f"no line with {needle!r}; stderr so far:\n{''.join(self.stderr)}")

    def finish(self, timeout_s: float = 120.0) -> tuple[int, str]:
        """Wait for the exit; (exit code, stdout). ``stderr`` then holds every stderr line."""
        assert self.proc.stdout is not None
        killer = threading.Timer(timeout_s, self.proc.kill)  # a hung process fails the test instead of hanging it
        killer.start()
        try:
            out = self.proc.stdout.read()  # stderr is read by the pump thread only
            self.proc.wait()
            self._pump_thread.join(10)
        finally:
            killer.cancel()
        return self.proc.returncode, out


@pytest.fixture
def cli(stack: Any) -> Iterator[Callable[..., Cli]]:
    """Factory of ``orderflow`` subprocesses targeting the test stack; any still running is killed after."""
    started: list[Cli] = []

    def run(*args: str) -> Cli:
        c = Cli(list(args), stack.env())
        started.append(c)
        return c

    yield run
    for c in started:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait()
