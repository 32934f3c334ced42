"""``orderflow book replay``: summary, MBP-10 output, error policy, several files, LOBSTER input."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from producers.mbp10 import header
from streams.cli import main
from tests.producers.readers.conftest import AAPL_MESSAGES, ARL_CSV, DBN_VERSIONS

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_summary_of_the_arl_session_in_a_real_process(shared_data: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "book", "replay", str(shared_data / ARL_CSV), "--summary"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "resting orders: 6 (bids 3 at 3 levels, asks 3 at 3 levels)" in out
    assert "best bid 9.85 x 400 (1 orders)   best ask 16.25 x 60 (1 orders)" in out
    assert "replayed 5,886 records" in out and "book ARL (2/1108)" in out
    assert "consistency_points=4215" in out


def test_mbp10_csv_output(tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mbp10.csv"
    assert main(["book", "replay", str(shared_data / ARL_CSV), "--mbp10-csv", str(out), "--no-progress"]) == 0
    with out.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == header() and 1 + 2_000 < len(rows) < 1 + 4_197  # events outside the ten levels: no row
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["ts_recv"] == "2025-07-17T08:05:03.360842448Z" and first["rtype"] == "10"
    assert (first["action"], first["side"], first["depth"], first["price"]) == ("A", "B", "0", "5.510000000")
    assert (first["bid_px_00"], first["bid_sz_00"], first["bid_ct_00"]) == ("5.510000000", "100", "1")
    assert (first["ask_px_00"], first["ask_sz_00"], first["ask_ct_00"]) == ("", "0", "0")
    assert (first["symbol"], first["order_id"]) == ("ARL", "817593")
    assert capsys.readouterr().out == ""  # no summary unless asked


def test_every_record_and_dbn_layout_to_stdout(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["book", "replay", str(shared_data / DBN_VERSIONS[3]), "--mbp10-csv", "-", "--every-record",
            "--layout", "dbn", "--summary"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == ",".join(header("dbn")) and len(lines) == 3
    assert "resting orders: 0" in captured.err  # the summary moves to stderr when the CSV is on stdout


def test_several_files_replay_into_the_same_books(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(shared_data / ARL_CSV)
    assert main(["book", "replay", path, path, "--summary"]) == 0
    out = capsys.readouterr().out
    assert "replayed 11,772 records" in out and out.count("file ") == 2
    assert "resting orders: 6" in out
    assert "duplicates_skipped=5886, clears=1" in out  # the engine is idempotent: the same file again is a replay


def test_malformed_row_stop_and_skip(tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = (shared_data / ARL_CSV).read_text().splitlines()
    fields = lines[10].split(",")
    fields[5] = "Z"  # the action column
    lines[10] = ",".join(fields)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    assert main(["book", "replay", str(bad)]) == 1
    assert f"{bad}: row 11: action: 'Z' is not one of ACFMNRT" in capsys.readouterr().err
    assert main(["book", "replay", str(bad), "--on-error", "skip", "--summary"]) == 0
    assert "skipped=1, by_reason={'bad action': 1}" in capsys.readouterr().out


def test_lobster_input_with_ids(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["book", "replay", str(shared_data / AAPL_MESSAGES), "--instrument-id", "42", "--publisher-id", "2",
            "--summary"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "book AAPL (2/42)" in out and "replayed 1,195 records" in out


def test_book_group_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["book"]) == 2
    assert "replay" in capsys.readouterr().out


def test_progress_line(tmp_path: Path, shared_data: Path) -> None:
    from producers.readers import open_records
    from producers.replay_book import Progress

    log = tmp_path / "progress.txt"
    reader = open_records(shared_data / ARL_CSV)
    with log.open("w") as out:
        progress = Progress(out, enabled=True, interval=0.0)
        for n, _ in enumerate(reader, 1):
            if n % 2000 == 0:
                progress.update(n, reader)
        progress.close()
    text = log.read_text()
    assert "2,000 records" in text and "records/s" in text and "% of mbo.csv" in text
