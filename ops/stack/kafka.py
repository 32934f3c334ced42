"""The local Kafka broker: one KRaft node (broker and controller in one JVM) on loopback.

``server.properties`` is written from the settings at every start, the storage is formatted once (the cluster id
is kept in ``<home>/kafka/cluster.id``), the JVM runs detached with a PID file, and readiness is an AdminClient
that really fetches metadata. Topics come from :data:`topics.catalog.CATALOG`.
"""

from __future__ import annotations

import base64
import logging
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from ops.stack import jars, proc
from ops.stack.errors import CorruptDataError, StackError, StartError
from ops.stack.layout import Layout
from topics.catalog import CATALOG, TopicSpec
from topics.settings import Settings

logger = logging.getLogger(__name__)

NODE_ID = 1
MAIN_CLASS = "kafka.Kafka"
# ZGC, whose pauses stay under a millisecond: the serial collector stopped the broker for 15-19 ms every 2 s at
# 20,000 records/s, every partition at once (docs/benchmarks.md). Its concurrent cycles still take a core while they
# run, so the heap (ORDERFLOW_KAFKA_HEAP, 2g) leaves room for about 15 s of allocation between them.
# KAFKA_JVM_PERFORMANCE_OPTS replaces these flags.
DEFAULT_JVM_FLAGS = ("-XX:+UseZGC", "-Xshare:auto", "-Djava.awt.headless=true")
# ORDERFLOW_KAFKA_JIT=quick, and the short-lived tools: C1 only. It starts sooner and compiles less, but its code
# runs slower: a warm broker under load uses about a third more CPU than with the full JIT (docs/stack.md).
QUICK_JIT = ("-XX:TieredStopAtLevel=1",)
READY_TIMEOUT_S = 120.0

LOG4J2 = """\
# Written by orderflow stack up: everything to stdout, which the stack redirects to logs/kafka.log.
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.controller.name = kafka.controller
logger.controller.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def server_properties(settings: Settings, layout: Layout) -> str:
    """The broker's configuration: a single combined node with a static one-voter quorum on loopback."""
    host = settings.kafka_host
    props = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{host}:{settings.kafka_controller_port}",
        "listeners": f"PLAINTEXT://{host}:{settings.kafka_port},CONTROLLER://{host}:{settings.kafka_controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{settings.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(layout.kafka_data),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "message.max.bytes": str(16 * 1024 * 1024),
        "replica.fetch.max.bytes": str(16 * 1024 * 1024),
        "log.retention.check.interval.ms": "60000",
    }
    lines = ["# Written by `orderflow stack up` from the ORDERFLOW_* settings; edits are overwritten."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def write_config(settings: Settings, layout: Layout) -> None:
    layout.kafka_config.parent.mkdir(parents=True, exist_ok=True)
    layout.kafka_config.write_text(server_properties(settings, layout))
    layout.kafka_log4j.write_text(LOG4J2)


def new_cluster_id() -> str:
    """A cluster id as Kafka makes them: a random UUID in URL-safe base64 without padding, not starting '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def read_meta(path: Path) -> dict[str, str]:
    """Parse ``meta.properties``; raise :class:`CorruptDataError` on anything that is not key=value lines."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise _corrupt(path.parent, f"{path.name} is unreadable ({e})") from None
    meta: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        if "=" not in line:
            raise _corrupt(path.parent, f"{path.name} line {number} is not key=value: {line[:60]!r}")
        key, value = line.split("=", 1)
        meta[key.strip()] = value.strip()
    return meta


def _corrupt(data: Path, reason: str) -> CorruptDataError:
    return CorruptDataError(
        f"the Kafka data folder {data} is not usable: {reason}",
        f"if its messages are expendable, delete it (`rm -rf {data}`) and run `orderflow stack up` again; "
        "otherwise restore it or point ORDERFLOW_HOME elsewhere",
    )


def check_data(layout: Layout) -> bool:
    """Validate the data folder before starting; True if it is already formatted, False if it needs formatting."""
    data = layout.kafka_data
    if data.exists() and not data.is_dir():
        raise _corrupt(data, "it is a file, not a folder")
    if not data.exists() or not any(data.iterdir()):
        return False
    meta_path = data / "meta.properties"
    if not meta_path.is_file():
        raise _corrupt(data, "it holds files but no meta.properties (not a formatted Kafka log directory)")
    meta = read_meta(meta_path)
    for key in ("version", "cluster.id", "node.id"):
        if not meta.get(key):
            raise _corrupt(data, f"meta.properties has no {key}")
    if meta["node.id"] != str(NODE_ID):
        raise _corrupt(data, f"meta.properties says node.id={meta['node.id']}, this stack runs node {NODE_ID}")
    known = layout.kafka_cluster_id.read_text().strip() if layout.kafka_cluster_id.exists() else meta["cluster.id"]
    if meta["cluster.id"] != known:
        raise _corrupt(
            data, f"meta.properties has cluster.id={meta['cluster.id']} but this stack formatted cluster {known}"
        )
    return True


def java_command(java: str, heap: str, layout: Layout, main: str, *args: str, jit: str = "quick") -> list[str]:
    """The JVM command line running ``main`` on the cached jars with the given heap and the stack's flags
    (``jit``: "full", or "quick" for C1 only)."""
    extra = os.environ.get("KAFKA_JVM_PERFORMANCE_OPTS")
    flags = shlex.split(extra) if extra is not None else [*DEFAULT_JVM_FLAGS, *(QUICK_JIT if jit == "quick" else ())]
    return [
        java, f"-Xmx{heap}", f"-Xms{heap}", *flags,
        f"-Dlog4j2.configurationFile={layout.kafka_log4j}", f"-Dkafka.logs.dir={layout.kafka_log.parent}",
        "-cp", jars.classpath(layout), main, *args,
    ]


def format_storage(java: str, layout: Layout) -> str:
    """Format the KRaft metadata log once, with a new cluster id that is kept for later checks."""
    cluster_id = new_cluster_id()
    layout.kafka_data.mkdir(parents=True, exist_ok=True)
    cmd = java_command(java, "256m", layout, "kafka.tools.StorageTool",
                       "format", "-t", cluster_id, "-c", str(layout.kafka_config))
    proc_ = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc_.returncode != 0:
        out = (proc_.stdout + proc_.stderr).strip().splitlines()
        raise StartError(f"formatting the Kafka storage in {layout.kafka_data} failed: {' '.join(out[-3:])}",
                         f"check the JVM flags (KAFKA_JVM_PERFORMANCE_OPTS) and {layout.kafka_config}")
    layout.kafka_cluster_id.write_text(cluster_id + "\n")
    logger.info("formatted Kafka storage %s (cluster %s)", layout.kafka_data, cluster_id)
    return cluster_id


def spawn(cmd: Sequence[str], log: Path) -> int:
    """Start ``cmd`` detached (new session, parent is init, stdin closed, output appended to ``log``); its PID."""
    log.parent.mkdir(parents=True, exist_ok=True)
    script = '"$@" </dev/null >>"$0" 2>&1 & echo $!'
    out = subprocess.run(["/bin/sh", "-c", script, str(log), *cmd], capture_output=True, text=True,
                         start_new_session=True, check=True)
    return int(out.stdout.strip())


def running_pid(layout: Layout) -> int | None:
    """The broker's PID if the PID file names a living ``kafka.Kafka`` of this home, else None."""
    pid = proc.read_pid(layout.kafka_pid)
    return pid if proc.is_ours(pid, MAIN_CLASS, str(layout.kafka_config)) else None


def start(java: str, settings: Settings, layout: Layout) -> int:
    """Launch the broker (formatting on first start); returns its PID without waiting for readiness."""
    write_config(settings, layout)
    if not check_data(layout):
        format_storage(java, layout)
    layout.kafka_log.parent.mkdir(parents=True, exist_ok=True)
    with layout.kafka_log.open("a") as f:
        f.write(f"\n===== orderflow stack up {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n")
    pid = spawn(java_command(java, settings.kafka_heap, layout, MAIN_CLASS, str(layout.kafka_config),
                             jit=settings.kafka_jit), layout.kafka_log)
    layout.kafka_pid.parent.mkdir(parents=True, exist_ok=True)
    layout.kafka_pid.write_text(f"{pid}\n")
    logger.info("started Kafka (pid %d), waiting for it to answer on %s", pid, settings.bootstrap_servers)
    return pid


def admin(settings: Settings) -> AdminClient:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "socket.connection.setup.timeout.ms": 2000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 250,
        "logger": logging.getLogger("ops.stack.librdkafka"),
    }
    return AdminClient(conf)


def await_ready(settings: Settings, layout: Layout, pid: int, timeout: float = READY_TIMEOUT_S) -> float:
    """Poll until the broker returns cluster metadata; the seconds that took. Fails fast if the JVM dies."""
    started = time.monotonic()
    client = admin(settings)
    while True:
        try:
            metadata = client.list_topics(timeout=1.0)
            if metadata.brokers:
                return time.monotonic() - started
        except KafkaException:
            pass
        proc.wait_gone(pid, 0)  # reap it if it was our child and died
        if not proc.is_ours(pid, MAIN_CLASS):
            raise StartError(f"Kafka exited during start-up; last lines of {layout.kafka_log}:\n"
                             + proc.tail(layout.kafka_log, 15),
                             "fix the cause above, then run `orderflow stack up` again")
        if time.monotonic() - started > timeout:
            proc.terminate(pid)
            raise StartError(f"Kafka did not answer on {settings.bootstrap_servers} within {timeout:.0f} s",
                             f"see `orderflow stack logs kafka` ({layout.kafka_log})")
        time.sleep(0.2)


def topic_partitions(settings: Settings, spec: TopicSpec) -> int:
    return settings.topic_partitions or spec.partitions


def ensure_topics(settings: Settings, specs: Iterable[TopicSpec] = CATALOG) -> tuple[list[str], list[str]]:
    """Create the missing catalog topics; returns (created, already present). Never alters existing ones."""
    client = admin(settings)
    existing = client.list_topics(timeout=10).topics
    wanted = list(specs)
    present = [s.name for s in wanted if s.name in existing]
    for spec in wanted:
        have = len(existing[spec.name].partitions) if spec.name in existing else None
        if have is not None and have != topic_partitions(settings, spec):
            logger.warning("topic %s has %d partitions, the catalog says %d; left as it is",
                           spec.name, have, topic_partitions(settings, spec))
    new = [NewTopic(s.name, num_partitions=topic_partitions(settings, s), replication_factor=1, config=s.config())
           for s in wanted if s.name not in existing]
    created: list[str] = []
    if new:
        for name, future in client.create_topics(new, operation_timeout=30, request_timeout=30).items():
            try:
                future.result()
                created.append(name)
            except KafkaException as e:
                if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise StackError(f"cannot create topic {name}: {e.args[0].str()}",
                                     "see `orderflow stack logs kafka`") from None
                present.append(name)
    return created, present


def health(settings: Settings) -> str:
    """'ok, N topics' if the broker answers metadata requests within a few seconds, else why not."""
    try:
        metadata = admin(settings).list_topics(timeout=3.0)
    except KafkaException as e:
        return f"not answering ({e.args[0].str() if e.args else e})"
    topics = [t for t in metadata.topics if not t.startswith("__")]
    return f"ok, {len(topics)} topics"


def stop(layout: Layout) -> str:
    """Stop the broker this stack started (PID file checked against /proc); what happened, in words."""
    pid = proc.read_pid(layout.kafka_pid)
    if pid is None:
        return "not running"
    if not proc.is_ours(pid, MAIN_CLASS, str(layout.kafka_config)):
        layout.kafka_pid.unlink(missing_ok=True)
        return f"not running (removed stale PID file naming {pid})"
    polite = proc.terminate(pid, timeout=60.0)
    layout.kafka_pid.unlink(missing_ok=True)
    return f"stopped (pid {pid})" if polite else f"killed after 60 s without stopping (pid {pid})"
