"""The local stack as a whole: ``up``, ``down``, ``status`` and ``logs`` over Kafka and PostgreSQL.

``up`` checks everything it can before starting anything (tools, ports, data folders), starts only what is not
already running, and stops what it started itself if a later step fails. ``down`` stops only processes whose PID
file and command line show they belong to this stack's home.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from confluent_kafka import KafkaException

from ops.stack import jars, kafka, postgres, proc
from ops.stack.errors import MissingToolError, StackError
from ops.stack.layout import Layout
from topics.settings import Settings

logger = logging.getLogger(__name__)

SERVICES = ("kafka", "postgres")


@dataclass
class UpReport:
    """What ``up`` did: one line per service, and how long Kafka took to answer (None if it was running)."""

    lines: list[str] = field(default_factory=list)
    kafka_ready_s: float | None = None
    started: list[str] = field(default_factory=list)

    @property
    def already_running(self) -> bool:
        return not self.started


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # "running" or "stopped"
    address: str
    pid: int | None
    health: str
    detail: str = ""

    @property
    def healthy(self) -> bool:
        return self.state == "running" and self.health.startswith("ok")


@dataclass
class _Plan:
    java: str | None
    pg_bin: Path
    timescale: bool


def _ports(settings: Settings, kafka_needed: bool, pg_needed: bool) -> list[proc.Port]:
    ports = []
    if kafka_needed:
        ports += [
            proc.Port("Kafka", settings.kafka_host, settings.kafka_port, "ORDERFLOW_KAFKA_PORT"),
            proc.Port("the Kafka controller", settings.kafka_host, settings.kafka_controller_port,
                      "ORDERFLOW_KAFKA_CONTROLLER_PORT"),
        ]
    if pg_needed:
        ports.append(proc.Port("PostgreSQL", settings.pg_host, settings.pg_port, "ORDERFLOW_PG_PORT"))
    return ports


def _preflight(settings: Settings, layout: Layout, kafka_needed: bool, pg_needed: bool) -> _Plan:
    """Every check that can fail before anything starts: tools, ports, data folders, then the jars."""
    pg_bin = postgres.find_bin(settings)
    java = jars.find_java() if kafka_needed else None
    proc.require_free(_ports(settings, kafka_needed, pg_needed))
    if kafka_needed:
        kafka.check_data(layout)
    if pg_needed:
        postgres.check_data(layout, postgres.server_major(pg_bin))
    if kafka_needed:
        jars.ensure_jars(layout, settings.kafka_version)
    return _Plan(java, pg_bin, postgres.timescaledb_enabled(settings, pg_bin))


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    """Failures of the tools underneath (files, subprocesses, clients) as one :class:`StackError`."""
    try:
        yield
    except StackError:
        raise
    except (OSError, subprocess.SubprocessError, KafkaException, psycopg.Error) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StackError(f"{action} failed: {type(e).__name__}: {detail}",
                         "see `orderflow stack logs` for the services' side") from e


def up(settings: Settings) -> UpReport:
    """Start whatever part of the stack is not running yet; idempotent."""
    with _translated("stack up"):
        return _up(settings)


def _up(settings: Settings) -> UpReport:
    layout = Layout.of(settings)
    report = UpReport()
    kafka_pid, pg_pid = kafka.running_pid(layout), postgres.running_pid(layout)
    if kafka_pid:
        report.lines.append(f"kafka: already running (pid {kafka_pid}) on {settings.bootstrap_servers}")
    if pg_pid:
        report.lines.append(f"postgres: already running (pid {pg_pid}) on {settings.pg_host}:{settings.pg_port}")
    if kafka_pid and pg_pid:
        return report
    plan = _preflight(settings, layout, kafka_pid is None, pg_pid is None)
    try:
        _start(settings, layout, plan, report, kafka_pid is None, pg_pid is None)
    except BaseException:
        if report.started:
            logger.warning("start-up failed; stopping what this call started: %s", ", ".join(report.started))
            _stop(settings, layout, report.started)
        raise
    return report


def _start(settings: Settings, layout: Layout, plan: _Plan, report: UpReport, kafka_needed: bool,
           pg_needed: bool) -> None:
    # Kafka's JVM boots for seconds: launch it first and make the PostgreSQL cluster meanwhile.
    launched = time.monotonic()
    pid = 0
    if kafka_needed and plan.java:
        pid = kafka.start(plan.java, settings, layout)
        report.started.append("kafka")
    if pg_needed:
        pg_pid = postgres.start(plan.pg_bin, settings, layout, plan.timescale)
        report.started.append("postgres")
        mode = postgres.ensure_database(settings, layout, plan.timescale)
        why = "" if plan.timescale else (" (ORDERFLOW_PG_TIMESCALEDB=off)" if settings.pg_timescaledb == "off"
                                         else " (timescaledb extension not installed)")
        report.lines.append(f"postgres: started (pid {pg_pid}) on {settings.pg_host}:{settings.pg_port}, "
                            f"database {settings.pg_database}, mode: {mode}{why}")
    if pid:
        kafka.await_ready(settings, layout, pid)
        report.kafka_ready_s = time.monotonic() - launched
        created, present = kafka.ensure_topics(settings)
        report.lines.insert(0, f"kafka: started (pid {pid}) on {settings.bootstrap_servers}, ready in "
                               f"{report.kafka_ready_s:.1f} s; topics: {len(created)} created, "
                               f"{len(present)} already present")


def _stop(settings: Settings, layout: Layout, services: list[str]) -> list[tuple[str, str]]:
    results = []
    if "kafka" in services:
        results.append(("kafka", kafka.stop(layout)))
    if "postgres" in services:
        try:
            bindir: Path | None = postgres.find_bin(settings)
        except MissingToolError:
            bindir = None
        results.append(("postgres", postgres.stop(bindir, layout)))
    return results


def down(settings: Settings) -> list[tuple[str, str]]:
    """Stop the services this stack's home started; (service, what happened) for each."""
    with _translated("stack down"):
        return _stop(settings, Layout.of(settings), list(SERVICES))


def status(settings: Settings) -> list[ServiceStatus]:
    """Each service: running or not, address, PID, health seen by a client, and PostgreSQL's mode."""
    with _translated("stack status"):
        return _status(settings, Layout.of(settings))


def _status(settings: Settings, layout: Layout) -> list[ServiceStatus]:
    result = []
    pid = kafka.running_pid(layout)
    health = kafka.health(settings) if pid else "-"
    result.append(ServiceStatus("kafka", "running" if pid else "stopped", settings.bootstrap_servers, pid, health,
                                f"Apache Kafka {settings.kafka_version} (KRaft)"))
    pg_pid = postgres.running_pid(layout)
    pg_health, mode = postgres.health(settings) if pg_pid else ("-", "")
    result.append(ServiceStatus("postgres", "running" if pg_pid else "stopped",
                                f"{settings.pg_host}:{settings.pg_port}", pg_pid, pg_health,
                                f"mode: {mode}" if mode else ""))
    return result


def logs(settings: Settings, service: str | None = None, lines: int = 50) -> dict[str, tuple[Path, str]]:
    """The last ``lines`` lines of each service's log file (or of one service), with the file's path."""
    files = Layout.of(settings).logs()
    if service is not None and service not in files:
        raise StackError(f"unknown service {service!r}", f"choose one of: {', '.join(files)}")
    chosen = [service] if service else list(files)
    return {name: (files[name], proc.tail(files[name], lines)) for name in chosen}
