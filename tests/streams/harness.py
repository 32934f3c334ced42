"""Book workers as real subprocesses on the session's broker, each test in its own topics and consumer group."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.stack.testing import LocalStack, create_topic, delete_topics, free_ports
from streams.publisher import OutputTopics
from topics import catalog

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 120.0  # generous upper bound of every wait; a wait is not an assertion on speed


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_S, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(every)


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None


def get_text(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return ""


def metric(text: str, name: str) -> float:
    """Sum of the samples of ``name`` (any labels) in a Prometheus text page."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Worker:
    name: str
    port: int
    workdir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> int:
        return get_json(self.url + "/health")[0]

    def books(self) -> dict[str, Any]:
        status, doc = get_json(self.url + "/books")
        assert status == 200, f"{self.name} /books answered {status}"
        return dict(doc)

    def book(self, instrument_id: int, depth: int = 1000) -> tuple[int, Any]:
        return get_json(f"{self.url}/books/{instrument_id}?depth={depth}")

    def metrics(self) -> str:
        return get_text(self.url + "/metrics")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Pipeline:
    """Topics ``<prefix>mbo.frames`` etc., a consumer group, and the workers started on them."""

    stack: LocalStack
    prefix: str
    partitions: int
    base: Path
    env_extra: Mapping[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)

    @property
    def topics(self) -> OutputTopics:
        return OutputTopics.with_prefix(self.prefix)

    @property
    def bootstrap(self) -> str:
        return self.stack.settings.bootstrap_servers

    @property
    def app_id(self) -> str:
        return f"{self.prefix}books"

    def create_topics(self) -> None:
        topics = self.topics
        create_topic(self.stack.settings, topics.frames, self.partitions, catalog.MBO_FRAMES.config())
        for name, spec in ((topics.bbo, catalog.BOOK_BBO), (topics.mbp10, catalog.BOOK_MBP10),
                           (topics.trades, catalog.BOOK_TRADES), (topics.anomalies, catalog.BOOK_ANOMALIES),
                           (topics.deadletter, catalog.DEAD_LETTER)):
            create_topic(self.stack.settings, name, spec.partitions, spec.config())

    def env(self) -> dict[str, str]:
        env = self.stack.env()
        env.update({"ORDERFLOW_STREAMS_COMMIT_INTERVAL_MS": "500", "ORDERFLOW_STREAMS_SESSION_TIMEOUT_MS": "6000",
                    "ORDERFLOW_STREAMS_MBP10_INTERVAL_MS": "200", "ORDERFLOW_LOG_LEVEL": "INFO",
                    "PYTHONPATH": str(REPO_ROOT)})
        env.update(self.env_extra)
        return env

    def worker(self, name: str) -> Worker:
        """A worker slot (port, workdir, log); started with :meth:`start`."""
        for w in self.workers:
            if w.name == name:
                return w
        port = free_ports(1)[0]
        w = Worker(name, port, self.base / f"work-{name}", self.base / f"{name}.log")
        self.workers.append(w)
        return w

    def start(self, name: str, workdir: Path | None = None) -> Worker:
        w = self.worker(name)
        if workdir is not None:
            w.workdir = workdir
        cmd = [sys.executable, "-m", "streams.cli", "--log-format", "text", "worker", "--web-port", str(w.port),
               "--workdir", str(w.workdir), "--app-id", self.app_id, "--topic-prefix", self.prefix]
        log = w.log.open("ab")
        w.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return w

    def kill(self, w: Worker) -> None:
        """kill -9: no checkpoint, no commit, no goodbye to the group."""
        assert w.proc is not None
        w.proc.send_signal(signal.SIGKILL)
        w.proc.wait(timeout=30)

    def stop(self, w: Worker) -> int:
        """SIGTERM: the worker checkpoints, commits and leaves the group."""
        assert w.proc is not None
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
            try:
                w.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(timeout=30)
        return int(w.proc.returncode)

    def wait_healthy(self, *workers: Worker) -> None:
        for w in workers:
            wait_for(f"{w.name} healthy (log: {w.log})", _healthy_or_dead(w))
            assert w.alive(), f"{w.name} exited; log:\n{tail(w.log)}"

    def close(self) -> None:
        for w in self.workers:
            if w.alive():
                self.stop(w)
        topics = self.topics
        delete_topics(self.stack.settings, [getattr(topics, f) for f in topics.__dataclass_fields__])


def _healthy_or_dead(w: Worker) -> Callable[[], bool]:
    return lambda: not w.alive() or w.health() == 200


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def replay(pipeline: Pipeline, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``orderflow replay FILE`` into the pipeline's frames topic (the producers' real command)."""
    cmd = [sys.executable, "-m", "streams.cli", "replay", str(path), "--topic", pipeline.topics.frames,
           "--bootstrap", pipeline.bootstrap, "--no-control", "--no-progress", *extra]
    env = {**pipeline.env(), "ORDERFLOW_REPLAY_CONTROL_PORT": "0"}
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"replay failed:\n{done.stdout}\n{done.stderr}"
    return done


def unique_prefix() -> str:
    return f"t{os.urandom(3).hex()}."


def first_difference(got: list[Any], want: list[Any]) -> str:
    """A short account of where two sequences part, for assertion messages."""
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"lengths {len(got)} vs {len(want)}; first difference at {i}: {a} != {b}"
    return f"lengths {len(got)} vs {len(want)}; one is a prefix of the other"
