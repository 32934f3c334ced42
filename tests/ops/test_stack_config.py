"""Unit tests of the local stack's generated configuration and its pre-start checks (no service started)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from ops.stack import jars, kafka, postgres
from ops.stack.errors import CorruptDataError, StackError
from ops.stack.layout import Layout
from ops.stack.testing import env_for, topic_name
from topics.settings import Settings, load

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load({}, home=tmp_path, kafka_port=19092, kafka_controller_port=19093, pg_port=55999)


def properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def test_server_properties_single_kraft_node_on_loopback(settings: Settings) -> None:
    props = properties(kafka.server_properties(settings, Layout.of(settings)))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["log.dirs"] == str(settings.home / "kafka" / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["auto.create.topics.enable"] == "false"


def test_cluster_id_looks_like_kafkas() -> None:
    ids = {kafka.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) and not i.startswith("-") for i in ids)


def test_java_command_uses_heap_jars_and_the_jit_asked_for(settings: Settings,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_JVM_PERFORMANCE_OPTS", raising=False)
    layout = Layout.of(settings)
    cmd = kafka.java_command("/usr/bin/java", "512m", layout, kafka.MAIN_CLASS, str(layout.kafka_config))
    full = kafka.java_command("/usr/bin/java", "512m", layout, kafka.MAIN_CLASS, jit="full")
    assert cmd[:3] == ["/usr/bin/java", "-Xmx512m", "-Xms512m"]
    assert "-XX:+UseZGC" in cmd and "-XX:TieredStopAtLevel=1" in cmd
    assert "-XX:+UseZGC" in full and "-XX:TieredStopAtLevel=1" not in full
    assert cmd[cmd.index("-cp") + 1] == f"{layout.kafka_libs}/*"
    assert cmd[-2:] == ["kafka.Kafka", str(layout.kafka_config)]
    monkeypatch.setenv("KAFKA_JVM_PERFORMANCE_OPTS", "-XX:+UseG1GC")
    cmd = kafka.java_command("java", "1g", layout, kafka.MAIN_CLASS)
    assert "-XX:+UseG1GC" in cmd and "-XX:TieredStopAtLevel=1" not in cmd


def write_meta(layout: Layout, text: str) -> None:
    layout.kafka_data.mkdir(parents=True, exist_ok=True)
    (layout.kafka_data / "meta.properties").write_text(text)


def test_kafka_data_missing_or_empty_needs_format(settings: Settings) -> None:
    layout = Layout.of(settings)
    assert kafka.check_data(layout) is False
    layout.kafka_data.mkdir(parents=True)
    assert kafka.check_data(layout) is False


def test_kafka_data_formatted_is_accepted(settings: Settings) -> None:
    layout = Layout.of(settings)
    write_meta(layout, "#\nversion=1\nnode.id=1\ncluster.id=abcdefghijklmnopqrstuv\ndirectory.id=x\n")
    assert kafka.check_data(layout) is True
    layout.kafka_cluster_id.write_text("abcdefghijklmnopqrstuv\n")
    assert kafka.check_data(layout) is True


@pytest.mark.parametrize(
    ("meta", "reason"),
    [
        ("this is garbage\n", "not key=value"),
        ("version=1\nnode.id=1\n", "no cluster.id"),
        ("version=1\nnode.id=7\ncluster.id=abc\n", "node.id=7"),
    ],
)
def test_kafka_data_corrupt_meta(settings: Settings, meta: str, reason: str) -> None:
    layout = Layout.of(settings)
    write_meta(layout, meta)
    with pytest.raises(CorruptDataError, match=re.escape(reason)) as info:
        kafka.check_data(layout)
    assert "rm -rf" in str(info.value)


def test_kafka_data_of_another_cluster(settings: Settings) -> None:
    layout = Layout.of(settings)
    write_meta(layout, "version=1\nnode.id=1\ncluster.id=one\n")
    layout.kafka_cluster_id.write_text("two\n")
    with pytest.raises(CorruptDataError, match=re.escape("cluster.id=one but this stack formatted cluster two")):
        kafka.check_data(layout)


def test_kafka_data_with_files_but_no_meta(settings: Settings) -> None:
    layout = Layout.of(settings)
    layout.kafka_data.mkdir(parents=True)
    (layout.kafka_data / "junk").write_text("x")
    with pytest.raises(CorruptDataError, match=re.escape("no meta.properties")):
        kafka.check_data(layout)


def test_kafka_data_path_is_a_file(settings: Settings) -> None:
    layout = Layout.of(settings)
    layout.kafka_data.parent.mkdir(parents=True)
    layout.kafka_data.write_text("x")
    with pytest.raises(CorruptDataError, match="is a file"):
        kafka.check_data(layout)


def test_pg_data_checks(settings: Settings) -> None:
    layout = Layout.of(settings)
    assert postgres.check_data(layout, "15") is False
    layout.pg_data.mkdir(parents=True)
    assert postgres.check_data(layout, "15") is False
    (layout.pg_data / "base").mkdir()
    with pytest.raises(CorruptDataError, match="no PG_VERSION"):
        postgres.check_data(layout, "15")
    (layout.pg_data / "PG_VERSION").write_text("14\n")
    with pytest.raises(CorruptDataError, match="PG_VERSION says '14'"):
        postgres.check_data(layout, "15")
    (layout.pg_data / "PG_VERSION").write_text("15\n")
    assert postgres.check_data(layout, "15") is True


def test_pg_server_conf(settings: Settings) -> None:
    layout = Layout.of(settings)
    plain = postgres.server_conf(settings, layout, timescale=False)
    assert "port = 55999" in plain and "listen_addresses = '127.0.0.1'" in plain
    assert f"unix_socket_directories = '{layout.pg_socket_dir}'" in plain
    assert "timescaledb" not in plain
    timescale = postgres.server_conf(settings, layout, timescale=True)
    assert "shared_preload_libraries = 'timescaledb'" in timescale
    assert "max_worker_processes = 40" in timescale and "timescaledb.max_background_workers = 24" in timescale


def test_pg_timescaledb_off_keeps_an_installed_extension_unloaded(settings: Settings, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "timescaledb_installed", lambda bindir: True)
    assert postgres.timescaledb_enabled(settings, tmp_path) is True
    assert postgres.timescaledb_enabled(replace(settings, pg_timescaledb="off"), tmp_path) is False


def test_pg_socket_path_too_long_is_clear(tmp_path: Path) -> None:
    settings = load({}, home=tmp_path / ("x" * 120))
    with pytest.raises(StackError, match="shorter folder"):
        postgres.prepare_dirs(settings, Layout.of(settings))


def test_pg_bin_setting_that_is_wrong(tmp_path: Path) -> None:
    settings = load({}, home=tmp_path, pg_bin=str(tmp_path))
    with pytest.raises(StackError, match="ORDERFLOW_PG_BIN"):
        postgres.find_bin(settings)


@pytest.mark.parametrize(
    ("text", "major"),
    [('openjdk version "17.0.15" 2025-04-15', 17), ('java version "1.8.0_392"', 8),
     ('openjdk version "21" 2023-09-19', 21), ("garbage", 0)],
)
def test_parse_java_version(text: str, major: int) -> None:
    assert jars.parse_java_version(text) == major


def test_jar_cache_marker(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    assert not jars.jars_ready(libs, "4.1.1")
    libs.mkdir()
    (libs / "kafka_2.13-4.1.1.jar").write_bytes(b"")
    (libs / jars.MARKER).write_text(jars.marker_text("4.1.1"))
    assert jars.jars_ready(libs, "4.1.1")
    assert not jars.jars_ready(libs, "4.2.0")


def test_maven_errors_are_classified(tmp_path: Path) -> None:
    unreachable = jars._maven_error(
        "[ERROR] Plugin x could not be resolved: Could not transfer artifact x from/to central: Connect to "
        "repo.maven.apache.org:443 failed: Connection refused -> [Help 1]\n[ERROR] \n", "4.1.1", tmp_path / "m.log")
    assert "unreachable" in str(unreachable) and "~/.m2/settings.xml" in str(unreachable)
    other = jars._maven_error("[ERROR] Non-parseable POM\n", "4.1.1", tmp_path / "m.log")
    assert "Non-parseable POM" in str(other) and "unreachable" not in str(other)


def test_env_for_round_trips_settings(settings: Settings) -> None:
    assert load(env_for(settings)) == settings


def test_topic_names_are_unique_and_legal() -> None:
    a, b = topic_name("test_x[param/1]"), topic_name("test_x[param/1]")
    assert a != b
    assert re.fullmatch(r"[A-Za-z0-9._-]+", a) and len(a) < 249


def test_stack_error_carries_hint() -> None:
    error = StackError("it broke", "do this")
    assert str(error) == "it broke\n  -> do this"
    assert str(StackError("alone")) == "alone"
