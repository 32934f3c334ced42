"""`orderflow run` starts a failed worker or service again (a worker exits 1 on a fault it cannot mend, for its
supervisor to restart it), and gives up naming the child once it failed too often."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from streams.errors import RunError
from streams.pipeline import Child, _start, restart_failed, stop

pytestmark = pytest.mark.unit


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def exited(child: Child) -> None:
    child.proc.wait(timeout=30)


def test_a_failed_child_is_started_again_and_a_clean_exit_is_left_alone(tmp_path: Path) -> None:
    # Arrange: a child that fails once (a marker file makes its second life run on), one that ends cleanly
    marker = tmp_path / "failed-once"
    flaky = _start("worker 1", python(
        f"import pathlib, sys, time; m = pathlib.Path({str(marker)!r})\n"
        "if not m.exists(): m.write_text('x'); sys.exit(1)\n"
        "time.sleep(30)"), tmp_path / "w1.log")
    done = _start("replay", python("pass"), tmp_path / "replay.log")
    exited(flaky)
    exited(done)
    first = flaky.proc
    # Act
    restart_failed([flaky, done])
    # Assert
    try:
        assert flaky.proc is not first and flaky.restarts == 1
        time.sleep(0.5)
        assert flaky.alive()
        assert done.restarts == 0 and done.proc.returncode == 0
    finally:
        stop(flaky, timeout=10)


def test_a_child_that_keeps_failing_ends_the_run_naming_it(tmp_path: Path) -> None:
    # Arrange
    broken = _start("sink", python("import sys; print('no database'); sys.exit(2)"), tmp_path / "sink.log")
    # Act
    for _ in range(3):
        exited(broken)
        restart_failed([broken], most=3)
    exited(broken)
    # Assert
    with pytest.raises(RunError, match=r"sink exited with 2 \(restarted 3 times\)") as failure:
        restart_failed([broken], most=3)
    assert "no database" in str(failure.value)
    assert broken.restarts == 3
