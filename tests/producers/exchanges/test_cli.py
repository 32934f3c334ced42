"""The ``orderflow ingest`` and ``orderflow fake-exchange`` commands: arguments, refusals, and a real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from ops.stack.testing import free_ports
from streams.cli import main
from topics import codec
from topics.records import TradeTick


@pytest.mark.unit
@pytest.mark.parametrize(("argv", "message"), [
    (["ingest", "--venues", "nope"], "unknown venue 'nope'"),
    (["ingest", "--venues", "okx"], "no --endpoint-override okx=ws://127.0.0.1:PORT"),
    (["ingest", "--venues", "okx", "--endpoint-override", "okx=http://x"], "is not a ws:// URL"),
    (["ingest", "--venues", "okx", "--endpoint-override", "okx"], "expected VENUE=VALUE"),
])
def test_ingest_refuses_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    assert message in capsys.readouterr().err


@pytest.mark.unit
def test_commands_are_registered(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fake-exchange", "--help"])
    out = capsys.readouterr().out
    assert "--misbehave" in out and "bad-checksum" in out
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    assert "--endpoint-override" in capsys.readouterr().out


def orderflow(*args: str, env: dict[str, str], **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "--log-format", "text", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.integration
@pytest.mark.slow
def test_fake_exchange_and_ingest_commands(captures: Path, stack: Any) -> None:
    env = stack.env()
    port, metrics = free_ports(2)
    fake = orderflow("fake-exchange", "--venue", "okx", "--port", str(port), "--speed", "0", "--data", str(captures),
                     env=env)
    try:
        assert fake.stdout is not None
        banner = fake.stdout.readline()
        assert f"ws://127.0.0.1:{port}/ws" in banner
        ingest = orderflow("ingest", "--venues", "okx", "--endpoint-override", f"okx=ws://127.0.0.1:{port}/ws",
                           "--duration", "8", "--metrics-port", str(metrics), env=env)
        out, err = ingest.communicate(timeout=120)
        assert ingest.returncode == 0, err
    finally:
        fake.terminate()
        fake.wait(30)
    summary = json.loads(out.strip().splitlines()[-1])["venues"]["okx"]
    assert summary["trades"] == 74 and summary["checksums_ok"] == 290
    assert summary["published"] == summary["trades"] + summary["quotes"] + summary["book_updates"]
    consumer = Consumer({"bootstrap.servers": stack.bootstrap_servers, "group.id": f"cli-{port}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe(["ticks.trades"])
    keys: list[bytes] = []  # one per trade (a message is a frame of one key's trades)
    idle = 0
    while idle < 10 and len(keys) < 74:
        msgs = consumer.consume(1000, timeout=1.0)
        idle = 0 if msgs else idle + 1
        for m in msgs:
            if m.error() is None and (m.key() or b"").startswith(b"okx:"):
                keys += [m.key() or b""] * len(codec.decode_records(TradeTick, m.value() or b""))
    consumer.close()
    assert len(keys) == 74
    assert set(keys) <= {b"okx:BTC-USDT", b"okx:BTC-USD-220527", b"okx:UNI-USD-SWAP"}
