"""Who held the cores while the pipeline's BBO updates were late: a latency run's timeline against a system-wide
``perf`` profile taken at the same time.

    perf record -a -F 1999 -k CLOCK_REALTIME -o /tmp/perf.data -- sleep 32 &
    python bench/pipeline.py --mode latency --timeline /tmp/timeline.json
    perf script -i /tmp/perf.data -F pid,tid,comm,time > /tmp/perf.txt
    python bench/bursts.py /tmp/timeline.json /tmp/perf.txt

The updates at or over the run's p99 are grouped into bursts (late updates less than ``--gap-ms`` apart). A burst's
window runs from the earliest ``ts_recv`` of its updates to its last read. Each perf sample is one core busy with
one thread (or idle) at one instant. The figures are the share of samples per process and kind of thread, over the
whole profile and inside the bursts' windows. A kind that takes a larger share inside the bursts than outside
delayed them. ``perf`` must take its timestamps from the wall clock (``-k CLOCK_REALTIME``), as the timeline does.

A perf script line: ``  data-plane-kafk  25220/25449 1795741008.370898:``
"""

from __future__ import annotations

import argparse
import re
import sys
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

SAMPLE = re.compile(r"^\s*(?P<comm>.+?)\s+(?P<pid>\d+)/(?P<tid>\d+)\s+(?:\[\d+\]\s+)?(?P<time>\d+\.\d+):")
JVM_KINDS = (("ZWorker", "GC"), ("ZDriver", "GC"), ("GC Thread", "GC"), ("G1 ", "GC"), ("C2 Compiler", "JIT"),
             ("C1 Compiler", "JIT"), ("data-plane-kafk", "requests"), ("kafka-scheduler", "scheduler"))


class Timeline(msgspec.Struct, frozen=True):
    """What ``bench/pipeline.py --timeline`` writes."""

    pids: dict[str, int]  # process name -> pid
    updates: list[tuple[int, int]]  # (read time, latency) of each BBO update, ns


@dataclass(frozen=True)
class Sample:
    time_ns: int
    pid: int
    comm: str  # the thread's name


@dataclass(frozen=True)
class Burst:
    start_ns: int  # earliest ts_recv of its late updates
    end_ns: int  # its last read
    updates: int
    worst_ns: int


def parse_samples(lines: Iterable[str]) -> Iterator[Sample]:
    """The samples of ``perf script -F pid,tid,comm,time`` (lines that are not samples are skipped)."""
    for line in lines:
        match = SAMPLE.match(line)
        if match is not None:
            seconds, _, fraction = match["time"].partition(".")
            time_ns = int(seconds) * 1_000_000_000 + int(fraction.ljust(9, "0")[:9])
            yield Sample(time_ns, int(match["pid"]), match["comm"].strip())


def late_bursts(updates: list[tuple[int, int]], threshold_ns: int, gap_ns: int) -> list[Burst]:
    """The updates with a latency of ``threshold_ns`` or more, grouped while less than ``gap_ns`` apart."""
    bursts: list[Burst] = []
    start = end = worst = count = 0
    for read, latency in sorted(u for u in updates if u[1] >= threshold_ns):
        if count and read - end >= gap_ns:
            bursts.append(Burst(start, end, count, worst))
            count = 0
        if not count:
            start, worst = read - latency, 0
        start, end, worst, count = min(start, read - latency), read, max(worst, latency), count + 1
    if count:
        bursts.append(Burst(start, end, count, worst))
    return bursts


def classify(sample: Sample, names: dict[int, str]) -> str:
    """``process: kind of thread`` of a sample: the JVM's GC, JIT, request and scheduler threads; librdkafka's
    threads (``rdk:``) apart from Python's; ``idle`` for a core that ran nothing."""
    if sample.pid == 0:
        return "idle"
    name = names.get(sample.pid)
    if name is None:
        return "other"
    if name == "broker":
        kind = next((k for prefix, k in JVM_KINDS if sample.comm.startswith(prefix)), "other threads")
        return f"broker: {kind}"
    return f"{name}: {'librdkafka' if sample.comm.startswith('rdk:') else 'python'}"


def in_window(samples: list[Sample], times: list[int], start: int, end: int) -> list[Sample]:
    """The samples taken from ``start`` to before ``end`` (``samples`` in time order, ``times`` their times)."""
    return samples[bisect_left(times, start):bisect_left(times, end)]


def shares(samples: list[Sample], names: dict[int, str], windows: list[tuple[int, int]]) -> tuple[Counter[str],
                                                                                                      Counter[str]]:
    """Samples per class over everything and inside ``windows`` (a sample in two windows counts once per window;
    ``samples`` in time order)."""
    times = [s.time_ns for s in samples]
    everywhere = Counter(classify(s, names) for s in samples)
    inside: Counter[str] = Counter()
    for start, end in windows:
        inside.update(classify(s, names) for s in in_window(samples, times, start, end))
    return everywhere, inside


def percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def report(timeline: Timeline, samples: list[Sample], gap_ns: int, top: int) -> list[str]:
    samples = sorted(samples, key=lambda s: s.time_ns)
    if not samples or not timeline.updates:
        raise SystemExit("bursts: no perf samples or no updates; was perf recording during the run?")
    first, last = samples[0].time_ns, samples[-1].time_ns
    updates = [u for u in timeline.updates if first <= u[0] - u[1] and u[0] <= last]  # those perf saw whole
    if not updates:
        raise SystemExit("bursts: the profile and the timeline do not overlap (perf record -k CLOCK_REALTIME?)")
    p99 = percentile([u[1] for u in timeline.updates], 0.99)
    bursts = late_bursts(updates, p99, gap_ns)
    names = {pid: name for name, pid in timeline.pids.items()}
    everywhere, inside = shares(samples, names, [(b.start_ns, b.end_ns) for b in bursts])
    total, within = sum(everywhere.values()), max(1, sum(inside.values()))
    late = sum(b.updates for b in bursts)
    lines = [f"p99 {p99 / 1e6:.2f} ms; {late:,} updates at or over it within the profile, in {len(bursts)} bursts "
             f"({gap_ns / 1e6:g} ms apart or more)",
             f"{'class':<28} {'whole profile':>14} {'in bursts':>10}"]
    for name, _ in (inside + everywhere).most_common():
        lines.append(f"{name:<28} {100 * everywhere[name] / total:>13.1f}% {100 * inside[name] / within:>9.1f}%")
    lines.append(f"largest {min(top, len(bursts))} bursts:")
    times = [s.time_ns for s in samples]
    for burst in sorted(bursts, key=lambda b: b.updates, reverse=True)[:top]:
        window = Counter(classify(s, names) for s in in_window(samples, times, burst.start_ns, burst.end_ns))
        count = max(1, sum(window.values()))
        lead = ", ".join(f"{k} {100 * v / count:.0f}%" for k, v in window.most_common(4))
        lines.append(f"  {(burst.end_ns - burst.start_ns) / 1e6:5.0f} ms, {burst.updates:4d} updates, worst "
                     f"{burst.worst_ns / 1e6:5.1f} ms: {lead}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("timeline", type=Path, help="written by bench/pipeline.py --timeline")
    p.add_argument("perf_script", type=Path, help="perf script -F pid,tid,comm,time output")
    p.add_argument("--gap-ms", type=float, default=20.0, help="late updates closer than this are one burst")
    p.add_argument("--top", type=int, default=10, help="bursts listed one by one")
    args = p.parse_args(argv)
    timeline = msgspec.json.decode(args.timeline.read_bytes(), type=Timeline)
    with args.perf_script.open() as f:
        samples = list(parse_samples(f))
    print("\n".join(report(timeline, samples, int(args.gap_ms * 1e6), args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
