"""A throw-away local stack for test sessions: its own home and free ports, started once, stopped at the end.

``tests/conftest.py`` builds its ``stack`` fixture on :func:`start_local_stack` / :func:`stop_local_stack`; the
jars are shared with the developer's stack (``<home>/kafka/libs`` is a link to the normal cache).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from ops.stack import jars, kafka, postgres, proc, stack
from ops.stack.layout import Layout
from topics.settings import PREFIX, Settings, load

logger = logging.getLogger(__name__)

HOME_PREFIX = "test-"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalStack:
    """A running test stack: ``settings`` point at it (``bootstrap_servers``, ``pg_dsn``)."""

    settings: Settings
    kafka_ready_s: float | None = None

    @property
    def home(self) -> Path:
        return Path(self.settings.home)

    @property
    def bootstrap_servers(self) -> str:
        return self.settings.bootstrap_servers

    @property
    def pg_dsn(self) -> str:
        return self.settings.pg_dsn

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment for subprocesses (``orderflow``, the Kafka wrappers) that targets this stack."""
        return {**(os.environ if base is None else base), **env_for(self.settings)}


def env_for(settings: Settings) -> dict[str, str]:
    """Every setting as its ``ORDERFLOW_*`` variable, so that ``load()`` in a child returns equal settings."""
    return {PREFIX + f.name.upper(): str(getattr(settings, f.name)) for f in fields(Settings)}


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that nothing listens on right now (held together while picking)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
    return ports


def new_home(base: Path, suffix: str = "") -> Path:
    """A fresh home below ``base`` (``test-<pid><suffix>``), or under /tmp if the postgres OS user cannot reach
    ``base``."""
    home = base / f"{HOME_PREFIX}{os.getpid()}{suffix}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    if postgres.server_user_can_reach(home):
        return home
    home.rmdir()
    tmp = Path(tempfile.mkdtemp(prefix=f"orderflow-{HOME_PREFIX}"))
    tmp.chmod(0o755)
    return tmp


def share_jars(home: Path, cache: Settings) -> None:
    """Resolve the jars once into the normal cache and link ``<home>/kafka/libs`` to it."""
    jars.ensure_jars(Layout.of(cache), cache.kafka_version)
    libs = Layout(home).kafka_libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    if not libs.exists():
        libs.symlink_to(Layout.of(cache).kafka_libs, target_is_directory=True)


def isolated_settings(home: Path, base: Settings) -> Settings:
    """Settings of a stack in ``home`` on free loopback ports, its broker on the quick JIT (a test session's
    broker lives minutes: a sooner start beats faster code), otherwise like ``base``."""
    kafka_port, controller_port, pg_port = free_ports(3)
    return replace(base, home=home, kafka_host="127.0.0.1", pg_host="127.0.0.1", kafka_bootstrap="",
                   kafka_port=kafka_port, kafka_controller_port=controller_port, pg_port=pg_port, kafka_jit="quick")


def start_local_stack(base: Settings | None = None) -> LocalStack:
    """Start Kafka and PostgreSQL in a new home under ``base.home``; stops what started if anything fails."""
    base = base or load()
    reap_stale(Path(base.home))
    settings = isolated_settings(new_home(Path(base.home)), base)
    share_jars(Path(settings.home), base)
    try:
        report = stack.up(settings)
    except BaseException:
        stop_local_stack(LocalStack(settings), remove=False)
        raise
    return LocalStack(settings, report.kafka_ready_s)


def stop_local_stack(local: LocalStack, remove: bool = True) -> list[tuple[str, str]]:
    """Stop the test stack; remove its home if asked (keep it to read the logs after a failure)."""
    outcome = stack.down(local.settings)
    if remove:
        shutil.rmtree(local.home, ignore_errors=True)
    return outcome


def reap_stale(base: Path) -> None:
    """Stop and remove test stacks left behind by test sessions that no longer run (killed pytest)."""
    for home in base.glob(f"{HOME_PREFIX}*"):
        match = re.fullmatch(rf"{HOME_PREFIX}(\d+)(-[\w-]+)?", home.name)
        if not match or proc.cmdline(int(match.group(1))) is not None:
            continue
        logger.info("stopping and removing the stale test stack in %s", home)
        with contextlib.suppress(Exception):
            stack.down(load({}, home=home))
        shutil.rmtree(home, ignore_errors=True)


def run_cli(env: Mapping[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ops.cli *args`` in the repository with ``env``; output captured as text."""
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], env=dict(env), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def topic_name(label: str) -> str:
    """A unique, legal Kafka topic name derived from ``label`` (e.g. the test's name)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.")[:80] or "topic"
    return f"test.{slug}.{os.urandom(4).hex()}"


def create_topic(settings: Settings, name: str, partitions: int = 1,
                 config: Mapping[str, str] | None = None) -> str:
    """Create ``name`` and wait until every partition has a leader; returns the name."""
    client = kafka.admin(settings)
    new = NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))
    client.create_topics([new], operation_timeout=30, request_timeout=30)[name].result()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        meta = client.list_topics(name, timeout=5).topics.get(name)
        if meta and meta.error is None and len(meta.partitions) == partitions \
                and all(p.leader >= 0 for p in meta.partitions.values()):
            return name
        time.sleep(0.05)
    raise TimeoutError(f"topic {name} has no leader after 30 s")


def delete_topics(settings: Settings, names: Iterable[str]) -> None:
    """Delete topics and wait until the broker has, ignoring the ones already gone; other failures are logged."""
    names = list(names)
    if not names:
        return
    client = kafka.admin(settings)  # held until every answer is in: a client dropped sooner cancels the deletions
    for name, future in client.delete_topics(names, operation_timeout=30).items():
        try:
            future.result()
        except KafkaException as e:
            if e.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                logger.warning("topic %s not deleted: %s", name, e)
    deadline = time.monotonic() + 10  # the broker answering metadata may learn of the deletion a little later
    while set(names) & set(client.list_topics(timeout=5).topics) and time.monotonic() < deadline:
        time.sleep(0.05)


def delete_topics_with_prefix(settings: Settings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a run's own, Faust's internal ones included); the
    names deleted."""
    if not prefix:
        raise ValueError("an empty prefix would delete every topic")
    names = sorted(t for t in kafka.admin(settings).list_topics(timeout=10).topics if t.startswith(prefix))
    delete_topics(settings, names)
    return names
