"""``orderflow simulate`` against the real broker: every record delivered, malformed messages as configured, and
the --out file is the same stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from producers.readers import open_records
from tests.producers.conftest import consume_raw, row_of
from topics import codec
from topics.errors import DecodeError
from topics.records import MboFrame

pytestmark = pytest.mark.integration


def test_simulate_publishes_the_stream_it_writes(cli: Any, stack: Any, mbo_topic: str, tmp_path: Path) -> None:
    out = tmp_path / "sim.csv"
    run = cli("simulate", "--instruments", "8", "--records", "20000", "--seed", "5", "--speed", "max",
              "--dup-rate", "0.01", "--malformed-rate", "0.01", "--topic", mbo_topic, "--out", str(out),
              "--no-progress")
    code, stdout = run.finish()
    assert code == 0, "".join(run.stderr)
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["records_delivered"] == summary["records"] >= 20_000
    assert summary["raw_delivered"] == summary["malformed"] > 0 and summary["duplicates"] > 0

    total = summary["frames_delivered"] + summary["raw_delivered"]
    messages = consume_raw(stack.bootstrap_servers, mbo_topic, done=lambda m: len(m) >= total)
    assert len(messages) == total
    frames: list[tuple[int, int, MboFrame]] = []
    malformed = 0
    for partition, offset, _, value in messages:
        try:
            frames.append((partition, offset, codec.decode(MboFrame, value)))
        except DecodeError:
            malformed += 1
    assert malformed == summary["malformed"]

    published: dict[int, list[tuple[Any, ...]]] = {}
    for _, _, frame in sorted(frames, key=lambda x: (x[0], x[1])):
        published.setdefault(frame.instrument_id, []).extend(row_of(r) for r in frame.records())
    written: dict[int, list[tuple[Any, ...]]] = {}
    for r in open_records(out).records():
        written.setdefault(r.instrument_id, []).append(row_of(r))
    assert published == written
