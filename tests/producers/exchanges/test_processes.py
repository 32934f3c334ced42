"""``orderflow ingest --processes N``: venues dealt among processes, their ports, their failures, a real run."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from ops.stack.testing import free_ports
from producers.exchanges.errors import ExchangeError
from producers.exchanges.ingest import IngestConfig
from producers.exchanges.processes import _failed, _Forwarder, process_configs, split_venues
from streams.cli import main
from streams.pipeline import get_json
from tests.producers.exchanges.test_cli import orderflow


@pytest.mark.unit
def test_venues_are_dealt_round_robin_into_non_empty_groups() -> None:
    assert split_venues(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    assert split_venues(["a", "b"], 4) == [["a"], ["b"]]  # never an empty process
    assert split_venues(["a", "b"], 1) == [["a", "b"]]
    with pytest.raises(ExchangeError, match="--processes must be at least 1, not 0"):
        split_venues(["a"], 0)


@pytest.mark.unit
def test_each_process_gets_its_venues_and_the_next_metrics_port() -> None:
    # Arrange
    endpoints = {name: f"ws://127.0.0.1:{9000 + i}/ws" for i, name in enumerate(("okx", "kraken", "okx#2"))}
    config = IngestConfig(venues=list(endpoints), bootstrap="b:9092", endpoints=endpoints, metrics_port=9500)

    # Act
    configs = process_configs(config, 2)
    quiet = process_configs(IngestConfig(venues=list(endpoints), bootstrap="b", endpoints=endpoints), 2)

    # Assert
    assert [(c.venues, c.metrics_port, c.bootstrap) for c in configs] == [
        (["okx", "okx#2"], 9500, "b:9092"), (["kraken"], 9501, "b:9092")]
    assert [c.metrics_port for c in quiet] == [0, 0]  # metrics off stays off


@pytest.mark.unit
def test_a_bad_endpoint_fails_before_any_process_starts() -> None:
    config = IngestConfig(venues=["okx", "kraken"], bootstrap="b", endpoints={"okx": "ws://127.0.0.1:1/ws"})

    with pytest.raises(ExchangeError, match="kraken: no --endpoint-override"):
        process_configs(config, 2)


class _Proc:
    def __init__(self, exitcode: int | None) -> None:
        self.exitcode = exitcode

    def is_alive(self) -> bool:
        return self.exitcode is None


@pytest.mark.unit
def test_an_error_exit_is_a_failure_and_a_requested_stop_is_not() -> None:
    running, crashed, terminated = _Proc(None), _Proc(1), _Proc(-signal.SIGTERM)
    forward = _Forwarder([])

    assert not _failed(running, forward) and _failed(crashed, forward)
    assert _failed(terminated, forward)  # killed by someone else
    forward()
    assert not _failed(terminated, forward) and _failed(crashed, forward)  # we asked it to stop


@pytest.mark.unit
def test_processes_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["ingest", "--venues", "okx", "--endpoint-override", "okx=ws://127.0.0.1:1/ws", "--processes", "0"]

    assert main(argv) == 1
    assert "--processes must be at least 1, not 0" in capsys.readouterr().err


def healthy(port: int) -> bool:
    return get_json(f"http://127.0.0.1:{port}/health")[0] == 200


@pytest.mark.integration
@pytest.mark.slow
def test_two_processes_each_publish_their_venues_with_their_own_health(captures: Path, stack: Any) -> None:
    # Arrange: two fake OKX exchanges, one per connection
    env = stack.env()
    ports, metrics = free_ports(2), free_ports(1)[0]
    fakes = [orderflow("fake-exchange", "--venue", "okx", "--port", str(p), "--speed", "0", "--data", str(captures),
                       env=env) for p in ports]
    try:
        for fake in fakes:
            assert fake.stdout is not None and "ws://127.0.0.1" in fake.stdout.readline()
        # Act: one venue per process, for 12 s
        # (labels okx#1 and okx#2: keys of their own on the session's shared tick topics)
        ingest = orderflow("ingest", "--venues", "okx#1,okx#2", "--processes", "2", "--duration", "12",
                           "--endpoint-override", f"okx#1=ws://127.0.0.1:{ports[0]}/ws",
                           "--endpoint-override", f"okx#2=ws://127.0.0.1:{ports[1]}/ws",
                           "--metrics-port", str(metrics), env=env)
        deadline = time.monotonic() + 60
        while not (healthy(metrics) and healthy(metrics + 1)) and time.monotonic() < deadline:
            time.sleep(0.2)
        both_healthy = healthy(metrics) and healthy(metrics + 1)
        out, err = ingest.communicate(timeout=120)
    finally:
        for fake in fakes:
            fake.terminate()
            fake.wait(30)
    # Assert: each process served its own /health, and each connection published the whole capture
    assert ingest.returncode == 0, err
    assert both_healthy
    venues = json.loads(out.strip().splitlines()[-1])["venues"]
    assert set(venues) == {"okx#1", "okx#2"}
    assert all(v["trades"] == 74 and v["checksums_ok"] == 290 for v in venues.values())
    assert all(v["published"] == v["trades"] + v["quotes"] + v["book_updates"] for v in venues.values())
