"""The local stack against the real thing: Kafka topics and messages, PostgreSQL rows, the CLI's behaviour."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from ops.stack import kafka, postgres, proc
from ops.stack import stack as stack_ops
from ops.stack.layout import Layout
from ops.stack.testing import LocalStack, env_for, isolated_settings, new_home, run_cli, share_jars
from topics.catalog import CATALOG
from topics.settings import Settings, load

pytestmark = pytest.mark.integration

BIN = Path(__file__).resolve().parents[2] / "ops" / "kafka" / "bin"


def produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def test_catalog_topics_exist_with_their_partitions(stack: LocalStack) -> None:
    metadata = AdminClient({"bootstrap.servers": stack.bootstrap_servers}).list_topics(timeout=10)
    for spec in CATALOG:
        assert spec.name in metadata.topics, spec.name
        assert len(metadata.topics[spec.name].partitions) == spec.partitions, spec.name


def test_catalog_topic_configs_applied(stack: LocalStack) -> None:
    from confluent_kafka.admin import ConfigResource

    admin = AdminClient({"bootstrap.servers": stack.bootstrap_servers})
    resource = ConfigResource("topic", "mbo.frames")
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["max.message.bytes"].value == str(8 * 1024 * 1024)
    assert configs["retention.ms"].value == str(2 * 24 * 3_600_000)


def test_message_round_trips(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=2)
    value = json.dumps({"instrument_id": 42, "price": 4_500_250_000_000}).encode()
    produce(kafka_bootstrap, topic, b"42", value)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{topic}",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in (0, 1)])
        message = None
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None
        assert (message.key(), message.value()) == (b"42", value)
    finally:
        consumer.close()


def test_console_consumer_wrapper_shows_json(stack: LocalStack, new_topic: Callable[..., str]) -> None:
    topic = new_topic()
    document = {"instrument_id": 7, "action": "A", "side": "B", "price": 101_250_000_000, "size": 3}
    produce(stack.bootstrap_servers, topic, b"7", json.dumps(document).encode())
    out = subprocess.run(
        [str(BIN / "kafka-console-consumer"), "--topic", topic, "--from-beginning", "--max-messages", "1",
         "--timeout-ms", "60000"],
        env=stack.env(), capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip()) == document


def test_topics_wrapper_lists_catalog(stack: LocalStack) -> None:
    out = subprocess.run([str(BIN / "kafka-topics"), "--list"], env=stack.env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert {spec.name for spec in CATALOG} <= set(out.stdout.split())


def test_postgres_table_round_trips_a_row(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS stack_probe (ts timestamptz, instrument_id int, price bigint)")
        conn.execute("INSERT INTO stack_probe VALUES ('2024-01-02 03:04:05+00', 42, 4500250000000)")
        row = conn.execute("SELECT instrument_id, price, extract(epoch FROM ts) FROM stack_probe").fetchone()
        conn.execute("DROP TABLE stack_probe")
    assert row is not None
    assert (row[0], row[1], int(row[2])) == (42, 4_500_250_000_000, 1_704_164_645)


def test_second_up_does_nothing(stack: LocalStack) -> None:
    layout = Layout.of(stack.settings)
    before = (kafka.running_pid(layout), postgres.running_pid(layout))
    out = run_cli(stack.env(), "stack", "up")
    assert out.returncode == 0, out.stderr
    assert "already running" in out.stdout
    assert (kafka.running_pid(layout), postgres.running_pid(layout)) == before


def test_status_shows_services_ports_pids_and_mode(stack: LocalStack) -> None:
    out = run_cli(stack.env(), "stack", "status")
    assert out.returncode == 0, out.stdout + out.stderr
    layout = Layout.of(stack.settings)
    assert str(kafka.running_pid(layout)) in out.stdout
    assert str(postgres.running_pid(layout)) in out.stdout
    assert f":{stack.settings.kafka_port}" in out.stdout and f":{stack.settings.pg_port}" in out.stdout
    assert "plain PostgreSQL" in out.stdout or "timescaledb" in out.stdout


def test_logs_prints_both_tails(stack: LocalStack) -> None:
    out = run_cli(stack.env(), "stack", "logs", "-n", "5")
    assert out.returncode == 0, out.stderr
    assert "==> kafka:" in out.stdout and "==> postgres:" in out.stdout
    assert "Kafka Server started" in proc.tail(Layout.of(stack.settings).kafka_log, 10_000)


@pytest.fixture
def fresh(tmp_path: Path) -> Settings:
    """Settings of a stack that was never started, on free ports, in ``tmp_path`` (nothing is started)."""
    return isolated_settings(tmp_path / "home", load())


def assert_clear_error(out: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert "error:" in out.stderr
    for fragment in fragments:
        assert fragment in out.stderr, out.stderr


def test_port_in_use_is_a_clear_error(fresh: Settings) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", fresh.kafka_port))
        squatter.listen()
        out = run_cli(cli_env(fresh), "stack", "up")
    assert_clear_error(out, f"127.0.0.1:{fresh.kafka_port} is already in use", "ORDERFLOW_KAFKA_PORT")
    assert not Layout.of(fresh).kafka_pid.exists()


def test_corrupt_kafka_data_is_a_clear_error(fresh: Settings) -> None:
    layout = Layout.of(fresh)
    layout.kafka_data.mkdir(parents=True)
    (layout.kafka_data / "meta.properties").write_bytes(b"\x00\x01garbage without equals\n")
    out = run_cli(cli_env(fresh), "stack", "up")
    assert_clear_error(out, "Kafka data folder", "not usable", "rm -rf")


def test_kafka_data_of_another_cluster_is_a_clear_error(fresh: Settings) -> None:
    layout = Layout.of(fresh)
    layout.kafka_data.mkdir(parents=True)
    (layout.kafka_data / "meta.properties").write_text("version=1\nnode.id=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\n")
    layout.kafka_cluster_id.write_text("BBBBBBBBBBBBBBBBBBBBBB\n")
    out = run_cli(cli_env(fresh), "stack", "up")
    assert_clear_error(out, "cluster.id=AAAAAAAAAAAAAAAAAAAAAA")


def test_pg_data_without_pg_version_is_a_clear_error(fresh: Settings) -> None:
    layout = Layout.of(fresh)
    layout.pg_data.mkdir(parents=True)
    (layout.pg_data / "junk.txt").write_text("not a cluster")
    out = run_cli(cli_env(fresh), "stack", "up")
    assert_clear_error(out, "PostgreSQL data folder", "no PG_VERSION")


def test_missing_java_is_a_clear_error(fresh: Settings) -> None:
    env = cli_env(fresh, PATH="/nonexistent")
    env.pop("JAVA_HOME", None)
    out = run_cli(env, "stack", "up")
    assert_clear_error(out, "Java is not installed", "bootstrap.sh")


@pytest.mark.slow
def test_unreachable_maven_repository_is_a_clear_error(fresh: Settings, tmp_path: Path) -> None:
    dead_port = free_port()
    m2 = tmp_path / "user" / ".m2"
    m2.mkdir(parents=True)
    (m2 / "settings.xml").write_text(
        f"<settings><localRepository>{tmp_path / 'repo'}</localRepository><mirrors><mirror><id>dead</id>"
        f"<mirrorOf>*</mirrorOf><url>http://127.0.0.1:{dead_port}/maven2</url></mirror></mirrors></settings>"
    )
    env = cli_env(fresh, MAVEN_OPTS=f"-Duser.home={tmp_path / 'user'}")
    out = run_cli(env, "stack", "up")
    assert_clear_error(out, "Maven repository", "unreachable")
    assert not Layout.of(fresh).kafka_libs.exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment aimed at ``settings``' stack, with ``extra`` variables on top."""
    return {**os.environ, **env_for(settings), **extra}


@pytest.fixture
def lifecycle() -> Iterator[Settings]:
    """A second, separate stack home for the up/down cycle (the session's stack keeps running)."""
    base = load()
    settings = isolated_settings(new_home(Path(base.home), "-lifecycle"), base)
    share_jars(Path(settings.home), base)
    try:
        yield settings
    finally:
        stack_ops.down(settings)
        shutil.rmtree(settings.home, ignore_errors=True)


@pytest.mark.slow
def test_up_then_down_leaves_no_process(lifecycle: Settings) -> None:
    env = cli_env(lifecycle)
    out = run_cli(env, "stack", "up")
    assert out.returncode == 0, out.stderr
    assert "ready in" in out.stdout
    layout = Layout.of(lifecycle)
    pids = [kafka.running_pid(layout), postgres.running_pid(layout)]
    assert all(pids), pids
    assert "already running" in run_cli(env, "stack", "up").stdout

    out = run_cli(env, "stack", "down")
    assert out.returncode == 0, out.stderr
    assert "kafka: stopped" in out.stdout and "postgres: stopped" in out.stdout
    assert [proc.cmdline(pid) for pid in pids if pid] == [None, None]
    assert processes_mentioning(str(lifecycle.home)) == []
    status = run_cli(env, "stack", "status")
    assert status.returncode == 3 and "stopped" in status.stdout
    assert "not running" in run_cli(env, "stack", "down").stdout


def processes_mentioning(text: str) -> list[int]:
    """PIDs of living processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            args = proc.cmdline(int(entry.name))
            if args and any(text in arg for arg in args):
                found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_jvm_flag_error_is_clear(lifecycle: Settings) -> None:
    out = run_cli(cli_env(lifecycle, KAFKA_JVM_PERFORMANCE_OPTS="-XX:+NoSuchJvmFlag"), "stack", "up")
    assert_clear_error(out, "Unrecognized VM option 'NoSuchJvmFlag'", "KAFKA_JVM_PERFORMANCE_OPTS")


@pytest.mark.slow
def test_failed_start_stops_what_it_started(lifecycle: Settings) -> None:
    env = cli_env(lifecycle, ORDERFLOW_KAFKA_HEAP="1k")  # the broker's JVM refuses such a heap
    out = run_cli(env, "stack", "up")
    assert_clear_error(out, "Kafka exited during start-up", "heap")
    assert processes_mentioning(str(lifecycle.home)) == []
    assert postgres.running_pid(Layout.of(lifecycle)) is None


def test_unexpected_os_error_is_one_message(fresh: Settings, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "plain-file"
    not_a_folder.write_text("x")
    out = run_cli(cli_env(fresh, ORDERFLOW_HOME=str(not_a_folder)), "stack", "up")
    assert_clear_error(out, "stack up failed: NotADirectoryError")
