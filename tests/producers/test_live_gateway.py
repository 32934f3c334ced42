"""The fake live gateway speaks the protocol the official ``databento`` client expects: handshake, refusals,
intraday replay from ``start``; and ``orderflow fake-databento`` serves it from the command line."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import databento as db
import databento_dbn
import pytest

from producers.live.fake_gateway import DEFAULT_KEY, FakeGateway, Feed
from tests.producers.conftest import REPO_ROOT, row_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a real TCP server on loopback, the official client

Rows = tuple[tuple[Any, ...], ...]


@pytest.fixture(scope="module")
def gateway(esh4: Path) -> Iterator[FakeGateway]:
    with FakeGateway(Feed.load(esh4)) as gw:
        yield gw


def stream(gw: FakeGateway, start: int | None, until_system: bool = True) -> list[Any]:
    """Every record the official client receives for ESH4 from ``start``, up to the replay-completed message."""
    received: queue.SimpleQueue[Any] = queue.SimpleQueue()
    client = db.Live(key=DEFAULT_KEY, gateway="127.0.0.1", port=gw.port)
    client.add_callback(received.put)
    client.subscribe(dataset="GLBX.MDP3", schema="mbo", symbols=["ESH4"], start=start)
    client.start()
    out: list[Any] = []
    try:
        while True:
            record = received.get(timeout=30)
            out.append(record)
            if isinstance(record, databento_dbn.SystemMsg):
                return out
    finally:
        client.terminate()


def test_a_start_replays_exactly_the_records_from_that_ts_event(gateway: FakeGateway, esh4_rows: Rows) -> None:
    # Arrange: a start in the middle of the session, on a timestamp shared by several records
    start = esh4_rows[40_000][1]

    # Act
    records = stream(gateway, start)

    # Assert
    mapping, *mbo, done = records
    assert isinstance(mapping, databento_dbn.SymbolMappingMsg) and mapping.stype_out_symbol == "ESH4"
    assert [row_of(r) for r in mbo] == [r for r in esh4_rows if r[1] >= start]
    assert done.msg == "Finished mbo replay"


def test_a_wrong_dataset_is_refused_with_the_gateways_reason(gateway: FakeGateway) -> None:
    # Arrange
    client = db.Live(key=DEFAULT_KEY, gateway="127.0.0.1", port=gateway.port)

    # Act / Assert
    with pytest.raises(db.BentoError, match=r"Unknown dataset 'XNAS\.ITCH'"):
        client.subscribe(dataset="XNAS.ITCH", schema="mbo", symbols=["ESH4"])


def test_a_wrong_key_is_refused(gateway: FakeGateway) -> None:
    # Arrange
    client = db.Live(key="db-notthekeynotthekeynotthek", gateway="127.0.0.1", port=gateway.port)

    # Act / Assert
    with pytest.raises(db.BentoError, match="Authentication failed"):
        client.subscribe(dataset="GLBX.MDP3", schema="mbo", symbols=["ESH4"])


def test_fake_databento_command_serves_until_sigterm(esh4: Path) -> None:
    # Arrange
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "--log-format", "text", "fake-databento", str(esh4), "--port", "0"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # Act
        assert proc.stderr is not None
        banner = ""
        deadline = time.monotonic() + 60
        while "DATABENTO_API_KEY=" not in banner and time.monotonic() < deadline:
            banner += proc.stderr.readline()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # Assert
    assert "dataset GLBX.MDP3, 68,792 records, symbols ESH4" in banner
    assert f"DATABENTO_API_KEY={DEFAULT_KEY} orderflow live --gateway 127.0.0.1 --port" in banner
    assert code == 0
