"""Unit tests of bench/bursts.py: perf samples parsed, late updates grouped into bursts, samples attributed."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from bench.bursts import Sample, Timeline, classify, late_bursts, main, parse_samples, shares

pytestmark = pytest.mark.unit

MS = 1_000_000
T0 = 1_795_741_008_000_000_000  # a wall-clock instant, ns
PERF_LINES = [  # perf script -F pid,tid,comm,time (and one with the cpu field)
    "         swapper     0/0     1795741008.000100:",
    " data-plane-kafk 25220/25449 1795741008.000200:",
    "       ZWorker#0 25220/25300 [001] 1795741008.010000:",
    "  C2 CompilerThre 25220/25301 1795741008.011000:",
    "          python 30232/30232 1795741008.012000:",
    "     rdk:broker1 30232/30240 1795741008.013000:",
    " kworker/1:2-vir  3251/3251  1795741008.014000:",
    "not a sample line",
]
PIDS = {"broker": 25220, "worker 1": 30232}


def test_perf_script_lines_become_samples_with_ns_times_and_thread_names() -> None:
    samples = list(parse_samples(PERF_LINES))

    assert len(samples) == 7
    assert samples[0] == Sample(T0 + 100_000, 0, "swapper")
    assert samples[2] == Sample(T0 + 10 * MS, 25220, "ZWorker#0")
    assert samples[3].comm == "C2 CompilerThre"
    assert samples[6] == Sample(T0 + 14 * MS, 3251, "kworker/1:2-vir")


def test_samples_are_classed_by_process_and_kind_of_thread() -> None:
    names = {pid: name for name, pid in PIDS.items()}

    classes = [classify(s, names) for s in parse_samples(PERF_LINES)]

    assert classes == ["idle", "broker: requests", "broker: GC", "broker: JIT", "worker 1: python",
                       "worker 1: librdkafka", "other"]


def test_late_updates_closer_than_the_gap_make_one_burst_from_the_earliest_receive_to_the_last_read() -> None:
    updates = [(T0 + 10 * MS, 1 * MS), (T0 + 11 * MS, 6 * MS), (T0 + 14 * MS, 5 * MS),  # late, 3 ms apart
               (T0 + 50 * MS, 7 * MS), (T0 + 60 * MS, 2 * MS)]

    bursts = late_bursts(updates, threshold_ns=5 * MS, gap_ns=20 * MS)

    assert [(b.start_ns - T0, b.end_ns - T0, b.updates, b.worst_ns) for b in bursts] == [
        (5 * MS, 14 * MS, 2, 6 * MS), (43 * MS, 50 * MS, 1, 7 * MS)]


def test_shares_count_every_sample_and_those_inside_the_windows() -> None:
    samples = list(parse_samples(PERF_LINES))
    names = {pid: name for name, pid in PIDS.items()}

    everywhere, inside = shares(samples, names, [(T0 + 9 * MS, T0 + 12 * MS)])

    assert sum(everywhere.values()) == 7
    assert inside == {"broker: GC": 1, "broker: JIT": 1}


def test_the_report_names_the_classes_of_the_late_windows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    updates = [(T0 + i * MS, MS) for i in range(1, 100)] + [(T0 + 12 * MS, 9 * MS)]
    timeline = tmp_path / "timeline.json"
    timeline.write_bytes(msgspec.json.encode(Timeline(pids=PIDS, updates=updates)))
    perf = tmp_path / "perf.txt"
    perf.write_text("\n".join([*PERF_LINES, "          python 30232/30232 1795741008.200000:"]) + "\n")

    assert main([str(timeline), str(perf)]) == 0

    out = capsys.readouterr().out
    assert "p99 9.00 ms; 1 updates at or over it within the profile, in 1 bursts" in out
    assert "9 ms,    1 updates, worst   9.0 ms: broker: GC 50%, broker: JIT 50%" in out
