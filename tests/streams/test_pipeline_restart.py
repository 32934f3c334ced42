"""`orderflow run` starts a failed worker or service again (a worker exits 1 on a fault it cannot mend, for its
supervisor to restart it), and gives up naming the child once it failed too often; at the end it stops its
children in an order that lets each close cleanly."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from streams.errors import RunError
from streams.pipeline import FAKE_EXCHANGE, Child, _start, restart_failed, shutdown, stop
from topics.settings import load

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


def test_shutdown_stops_the_fake_exchange_only_after_the_ingest_that_reads_it_has_exited(tmp_path: Path) -> None:
    # Arrange: children that note when SIGTERM reached them; the ingest takes a while to close its sockets
    log = tmp_path / "order.log"

    def child(name: str, linger_s: float) -> Child:
        return _start(name, python(
            "import signal, sys, time\n"
            f"def bye(*_):\n    time.sleep({linger_s})\n"
            f"    open({str(log)!r}, 'a').write({name!r} + ' exited at %f\\n' % time.time()); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\n"
            f"open({str(log)!r}, 'a').write({name!r} + ' up\\n')\n"
            "time.sleep(60)"), tmp_path / f"{name}.log")

    services = [child("sink", 0.0), child(FAKE_EXCHANGE, 0.0), child("ingest", 1.0)]
    deadline = time.monotonic() + 30
    while log.read_text().count(" up") < 3 if log.exists() else True:
        assert time.monotonic() < deadline, "the children did not start"
        time.sleep(0.05)
    settings = load()
    # Act
    shutdown(settings, [], services, None, down=False)
    # Assert
    exits = {line.split(" exited at ")[0]: float(line.split(" exited at ")[1])
             for line in log.read_text().splitlines() if " exited at " in line}
    assert set(exits) == {"sink", FAKE_EXCHANGE, "ingest"}
    assert exits[FAKE_EXCHANGE] > exits["ingest"]
