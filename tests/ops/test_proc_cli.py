"""Unit tests of the process/port helpers and of the ``stack`` command line (no service started)."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ops import cli
from ops.stack import proc
from ops.stack.errors import PortInUseError
from ops.stack.layout import Layout

pytestmark = pytest.mark.unit


def test_port_in_use_detects_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert proc.port_in_use("127.0.0.1", port)
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port} is already in use") as info:
            proc.require_free([proc.Port("Kafka", "127.0.0.1", port, "ORDERFLOW_KAFKA_PORT")])
        assert f"ORDERFLOW_KAFKA_PORT={port + 1}" in str(info.value)
    assert not proc.port_in_use("127.0.0.1", port)


def test_read_pid(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    assert proc.read_pid(path) is None
    path.write_text("garbage\n")
    assert proc.read_pid(path) is None
    path.write_text("1234\n/some/dir\n")
    assert proc.read_pid(path) == 1234


def test_is_ours_checks_the_command_line() -> None:
    me = os.getpid()
    assert proc.is_ours(me, "pytest")
    assert not proc.is_ours(me, "kafka.Kafka")
    assert not proc.is_ours(None)
    assert not proc.is_ours(0)


def test_terminate_and_wait_gone_reap_a_child() -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        deadline = time.monotonic() + 10  # between fork and exec /proc shows the parent's command line
        while proc.cmdline(child.pid) != ["sleep", "60"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.cmdline(child.pid) == ["sleep", "60"]
        assert proc.terminate(child.pid, timeout=10)
        assert proc.cmdline(child.pid) is None
    finally:
        child.kill()
        child.wait()


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    assert proc.tail(log, 5) == ""
    log.write_text("".join(f"line {i} " + "x" * 300 + "\n" for i in range(1000)))
    lines = proc.tail(log, 3).splitlines()
    assert [line.split()[1] for line in lines] == ["997", "998", "999"]
    assert proc.tail(log, 0) == ""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="orderflow")
    cli.add_commands(top.add_subparsers(dest="command"))
    return top


def test_add_commands_registers_stack_actions() -> None:
    args = parser().parse_args(["stack", "logs", "kafka", "-n", "7"])
    assert args.func is cli.run_stack
    assert (args.stack_command, args.service, args.lines) == ("logs", "kafka", 7)
    assert parser().parse_args(["stack", "up"]).stack_command == "up"


def test_stack_without_action_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run_stack(parser().parse_args(["stack"])) == 2
    assert "choose an action" in capsys.readouterr().err


def test_bad_setting_is_one_clear_message(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ORDERFLOW_KAFKA_PORT", "not-a-port")
    assert cli.run_stack(parser().parse_args(["stack", "status"])) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "ORDERFLOW_KAFKA_PORT" in err and "Traceback" not in err


def test_status_and_logs_of_a_stack_never_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("ORDERFLOW_PG_PORT", "1")  # nothing is contacted for a stopped service
    assert cli.run_stack(parser().parse_args(["stack", "status"])) == cli.EXIT_UNHEALTHY
    out = capsys.readouterr().out
    assert out.count("stopped") == 2
    assert cli.run_stack(parser().parse_args(["stack", "logs"])) == 0
    assert "(no log yet)" in capsys.readouterr().out
    assert cli.run_stack(parser().parse_args(["stack", "down"])) == 0
    assert capsys.readouterr().out.count("not running") == 2


def test_down_ignores_a_pid_file_naming_someone_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    layout = Layout(tmp_path)
    layout.kafka_pid.parent.mkdir(parents=True)
    layout.kafka_pid.write_text(f"{os.getpid()}\n")  # this pytest process: must not be killed
    monkeypatch.setenv("ORDERFLOW_HOME", str(tmp_path))
    assert cli.run_stack(parser().parse_args(["stack", "down"])) == 0
    assert f"stale PID file naming {os.getpid()}" in capsys.readouterr().out
    assert not layout.kafka_pid.exists()


def test_module_entry_point_help() -> None:
    out = subprocess.run([sys.executable, "-m", "ops.cli", "stack", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert out.returncode == 0
    for action in ("up", "down", "status", "logs"):
        assert action in out.stdout
