"""Pipeline benchmark: MBO frames -> broker -> book workers -> BBO topic, on this machine, broker included.

    python bench/pipeline.py                        # throughput, then latency at 20,000 records/s
    python bench/pipeline.py --workers 2            # two worker processes in one group
    python bench/pipeline.py --publisher faust      # outputs through Faust's producer instead of librdkafka
    ORDERFLOW_STREAMS_LOOP=asyncio python bench/pipeline.py    # without uvloop
    python bench/pipeline.py --profile /tmp/prof    # cProfile of each worker's main thread (the agent)
    python bench/pipeline.py --mode latency --broker-floor   # also: the frames' age at a plain librdkafka reader
    python bench/pipeline.py --mode latency --timeline /tmp/t.json   # each update's read time, for bench/bursts.py

Throughput: the ESH4 day (68,792 records), once per instrument (``--instruments``, renumbered), pre-encoded as
frames of ``--frame-records``, is published as fast as one confluent-kafka producer goes; a reader process counts
the BBO updates. The figure is records / (first frame sent -> last expected BBO update read): what the whole
pipeline sustains, with a backlog, producer and broker on the same cores.

Latency: frames of at most ``--latency-frame`` records (whole events) are sent at ``--rate`` records/s, each with
``ts_recv`` (and ``ts_sent``) set to the wall clock as it is sent; the reader process measures read time minus
``ts_recv`` of every BBO update: producer -> broker -> worker -> broker -> consumer.

Each run has its own topics (``bench<hex>.``) and consumer group on the broker of the ORDERFLOW_* settings
(started with ``orderflow stack up`` if it is not running); workers, topics and data are removed at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

from bench.procstat import broker_pid, process_cpu, stack_line  # noqa: E402
from bench.reading import arrived, consumer_at_end, floor_figures, read_ages  # noqa: E402
from ops.stack import stack  # noqa: E402
from ops.stack.testing import create_topic, delete_topics_with_prefix, free_ports  # noqa: E402
from streams.publisher import OutputTopics  # noqa: E402
from tests.streams.sessions import (  # noqa: E402
    esh4_records,
    esh4_reference,
    interleave,
    multi_session,
    renumbered,
)
from topics import catalog  # noqa: E402
from topics.codec import decode_records, encode  # noqa: E402
from topics.records import BboUpdate, MboFrame  # noqa: E402
from topics.settings import Settings, load  # noqa: E402

SNAPSHOT = 8_725  # records of the ESH4 day's opening snapshot


# ---------------------------------------------------------------------------------------------------- the reader

def read_bbo(bootstrap: str, topic: str, expected: int, deadline_s: float, ready: Any, out: Any,
             timeline: bool = False) -> None:
    """Child process: read ``topic`` from its end until ``expected`` BBO updates; report read time - ts_recv (and,
    with ``timeline``, each update's read time, wall clock ns)."""
    consumer = consumer_at_end(bootstrap, [topic], "reader", fetch_wait_ms=100)
    ready.set()
    cpu0 = time.process_time()
    latencies: list[int] = []
    reads: list[int] = []
    first = last = 0.0
    stop_at = time.monotonic() + deadline_s
    while len(latencies) < expected and time.monotonic() < stop_at:
        for msg in arrived(consumer, 0.05):
            if msg.error():
                continue
            now = time.time_ns()
            updates = decode_records(BboUpdate, msg.value() or b"")  # a framed topic
            latencies += [now - u.ts_recv for u in updates]
            if timeline:
                reads += [now] * len(updates)
            last = time.monotonic()
            first = first or last
    cpu = time.process_time() - cpu0
    consumer.close()
    out.put((len(latencies), first, last, latencies, cpu, reads))


# ---------------------------------------------------------------------------------------------------- the run

@dataclass
class Run:
    settings: Settings
    args: argparse.Namespace
    prefix: str
    workdir: Path
    workers: list[tuple[subprocess.Popen[bytes], int]]

    @property
    def topics(self) -> OutputTopics:
        return OutputTopics.with_prefix(self.prefix)

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap_servers


def start(settings: Settings, args: argparse.Namespace) -> Run:
    stack.up(settings)
    print(stack_line(settings, settings.streams_intake), flush=True)
    prefix = f"bench{os.urandom(3).hex()}."
    run = Run(settings, args, prefix, Path(tempfile.mkdtemp(prefix="orderflow-bench-")), [])
    topics = run.topics
    create_topic(settings, topics.frames, args.partitions, catalog.MBO_FRAMES.config())
    for name, spec in ((topics.bbo, catalog.BOOK_BBO), (topics.mbp10, catalog.BOOK_MBP10),
                       (topics.trades, catalog.BOOK_TRADES), (topics.anomalies, catalog.BOOK_ANOMALIES),
                       (topics.deadletter, catalog.DEAD_LETTER)):
        create_topic(settings, name, spec.partitions, spec.config())
    for i, port in enumerate(free_ports(args.workers)):
        run.workers.append((start_worker(run, i, port), port))
    wait_healthy(run)
    return run


def start_worker(run: Run, index: int, port: int) -> subprocess.Popen[bytes]:
    python = [sys.executable]
    if run.args.profile:
        Path(run.args.profile).mkdir(parents=True, exist_ok=True)
        python += ["-m", "cProfile", "-o", str(Path(run.args.profile) / f"worker-{index + 1}.prof")]
    cmd = [*python, "-m", "streams.cli", "--log-format", "text", "--log-level", "WARNING", "worker",
           "--web-port", str(port), "--workdir", str(run.workdir / f"w{index}"), "--app-id", f"{run.prefix}books",
           "--topic-prefix", run.prefix, "--publisher", run.args.publisher]
    log = (run.workdir / f"worker-{index + 1}.log").open("ab")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})


def wait_healthy(run: Run) -> None:
    deadline = time.monotonic() + 180
    for proc, port in run.workers:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"a worker exited; see {run.workdir}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"workers not healthy; see {run.workdir}")
            time.sleep(0.2)


def finish(run: Run) -> None:
    for proc, _ in run.workers:
        proc.send_signal(signal.SIGTERM)
    for proc, _ in run.workers:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    delete_topics_with_prefix(run.settings, run.prefix)  # the workers' internal topics (changelog, assignor) too
    shutil.rmtree(run.workdir, ignore_errors=True)


COMPRESSION = "lz4"  # as `orderflow replay` (ORDERFLOW_PRODUCER_COMPRESSION); --compression changes it


def producer(bootstrap: str, linger_ms: float) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms, "partitioner": "murmur2_random",
                     "compression.type": COMPRESSION, "enable.idempotence": True, "batch.size": 1_000_000,
                     "queue.buffering.max.kbytes": 2_097_152, "message.max.bytes": 16 * 1024 * 1024})


def processes_cpu(run: Run) -> dict[str, float]:
    pids = {f"worker {i + 1}": proc.pid for i, (proc, _) in enumerate(run.workers)}
    return {name: process_cpu(pid) for name, pid in {**pids, **broker_pid(run.settings)}.items()}


def reader(run: Run, expected: int, deadline_s: float, timeline: bool = False) -> tuple[Any, Any]:
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=read_bbo, args=(run.bootstrap, run.topics.bbo, expected, deadline_s, ready, out,
                                              timeline))
    proc.start()
    ready.wait(60)
    return proc, out


def floor_reader(run: Run, seconds: float) -> tuple[Any, Any]:
    """``--broker-floor``: a plain librdkafka reader of the frames topic during the latency run (bench.reading)."""
    ctx = mp.get_context("spawn")
    ready, (recv, send) = ctx.Event(), ctx.Pipe(duplex=False)
    proc = ctx.Process(target=read_ages, args=(run.bootstrap, [run.topics.frames], seconds, 0.0, ready, send))
    proc.start()
    ready.wait(60)
    return proc, recv


# ---------------------------------------------------------------------------------------------------- throughput

def throughput(run: Run) -> dict[str, Any]:
    instruments = tuple(range(100_001, 100_001 + run.args.instruments))
    session = multi_session(instruments, run.args.frame_records)
    messages = [(str(f.instrument_id).encode(), encode(f)) for f in session]
    records = sum(len(f) for f in session)
    expected = len(esh4_reference()[0]) * len(instruments)
    proc, out = reader(run, expected, deadline_s=600)
    cpu_before = processes_cpu(run)
    prod = producer(run.bootstrap, 5.0)
    started = time.monotonic()
    for key, value in messages:
        while True:
            try:
                prod.produce(run.topics.frames, value, key)
                break
            except BufferError:
                prod.poll(0.05)
        prod.poll(0)
    prod.flush(120)
    produced = time.monotonic()
    count, _, last, *_ = out.get(timeout=700)
    proc.join()
    cpu_after = processes_cpu(run)
    elapsed = last - started if count >= expected else float("nan")
    return {"records": records, "frames": len(messages), "bbo": count, "bbo_expected": expected,
            "produce_s": produced - started, "elapsed_s": elapsed, "records_per_s": records / elapsed,
            "cpu_s": {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 1) for k in cpu_after}}


# ---------------------------------------------------------------------------------------------------- latency

def latency(run: Run) -> dict[str, Any]:
    """Records arrive at ``--rate`` per second, each stamped ts_recv = its arrival (wall clock); the producers'
    Framer cuts frames (whole events, at most ``--latency-frame`` records, ``--linger-ms``) as a live feed would,
    so the figure includes the framing wait."""
    from producers.framing import ColumnBlock, Framer

    rate, seconds = run.args.rate, run.args.seconds
    day = esh4_records()
    copies = max(1, -(-int(rate * seconds) // (len(day) - SNAPSHOT)))  # instruments needed for the run's length
    books = [list(renumbered(day, 200_001 + i)) for i in range(copies)]
    prod = producer(run.bootstrap, 0.0)
    # warm-up, not measured: each book's opening snapshot (one event of 8,725 records, no BBO), the producer's id
    for records in books:
        warm = MboFrame.from_records(records[:SNAPSHOT], ts_sent=time.time_ns())
        prod.produce(run.topics.frames, encode(warm), str(warm.instrument_id).encode())
    prod.flush(30)
    time.sleep(2.0 + copies * 0.2)
    live = interleave(*(records[SNAPSHOT:] for records in books), chunk=100)[: int(rate * seconds)]
    expected_bbo = sum(_bbo_count(records[:SNAPSHOT], [r for r in live if r.instrument_id == records[0].instrument_id])
                       for records in books)
    proc, out = reader(run, expected_bbo, deadline_s=seconds + 120, timeline=bool(run.args.timeline))
    floor = floor_reader(run, seconds + 5.0) if run.args.broker_floor else None
    framer = Framer(max_records=run.args.latency_frame, linger_s=run.args.linger_ms / 1000)
    cpu_before = processes_cpu(run)
    own_cpu = time.process_time()
    started, sent, frames_sent = time.monotonic(), 0, 0
    wall0 = time.time_ns()
    tick = 0.0005
    while sent < len(live) or framer.pending_records:
        now = time.monotonic() - started
        due = min(len(live), int(now * rate) + 1)
        if due > sent:
            arrived = [msgspec.structs.replace(r, ts_recv=wall0 + int((sent + i) / rate * 1e9))
                       for i, r in enumerate(live[sent:due])]
            frames_out = []
            for block in ColumnBlock.from_records(arrived):
                frames_out += framer.add(block, now, time.time_ns())
            frames_out += framer.poll(now, time.time_ns())  # other instruments' events whose linger ran out
            sent = due
        else:
            frames_out = framer.poll(now, time.time_ns()) if sent < len(live) else framer.flush(time.time_ns())
        for frame in frames_out:
            prod.produce(run.topics.frames, encode(frame), str(frame.instrument_id).encode())
            frames_sent += 1
        prod.poll(0)
        if not frames_out:
            time.sleep(tick)
    prod.flush(60)
    achieved = sent / (time.monotonic() - started)
    own_cpu = time.process_time() - own_cpu
    count, _, _, lat, reader_cpu, reads = out.get(timeout=seconds + 180)
    if run.args.timeline:
        write_timeline(Path(run.args.timeline), run, proc.pid, reads, lat)
    proc.join()
    ages: list[float] = []
    if floor is not None:
        ages = floor[1].recv()
        floor[0].join(30)
    cpu_after = processes_cpu(run)
    tenth = max(1, len(lat) // 10)
    over_time = [round(sorted(lat[i:i + tenth])[len(lat[i:i + tenth]) // 2] / 1e6, 2)
                 for i in range(0, len(lat), tenth)]
    lat.sort()
    return {"records": sent, "rate_target": rate, "rate_achieved": round(achieved), "frames": frames_sent,
            "bbo": count, "bbo_expected": expected_bbo,
            "p50_ms": _pct(lat, 0.50), "p99_ms": _pct(lat, 0.99), "p999_ms": _pct(lat, 0.999),
            "max_ms": lat[-1] / 1e6 if lat else None, "p50_ms_by_tenth": over_time,
            "cpu_s": {**{k: round(cpu_after[k] - cpu_before.get(k, 0.0), 1) for k in cpu_after},
                      "bench producer": round(own_cpu, 1), "bench reader": round(reader_cpu, 1)},
            **({"broker_floor_ms": floor_figures(ages)} if floor is not None else {})}


def write_timeline(path: Path, run: Run, reader_pid: int | None, reads: list[int], latencies: list[int]) -> None:
    """``--timeline``: the processes' ids and each BBO update's (read time, latency) in ns, as JSON, for
    ``bench/bursts.py``."""
    pids = {**{f"worker {i + 1}": proc.pid for i, (proc, _) in enumerate(run.workers)},
            **broker_pid(run.settings), "bench producer": os.getpid(), "bench reader": reader_pid or -1}
    path.write_bytes(msgspec.json.encode({"pids": pids, "updates": list(zip(reads, latencies, strict=True))}))
    print(f"timeline of {len(reads):,} BBO updates written to {path}", flush=True)


def _bbo_count(snapshot: list[Any], live: list[Any]) -> int:
    """BBO updates the offline engine makes for ``live`` after ``snapshot`` (one instrument)."""
    from processors.book import Book

    book = Book(1, snapshot[0].instrument_id)
    for rec in snapshot:
        book.apply(rec)
    last: Any = (None, None)  # the worker publishes the first BBO of the live feed in any case
    n = 0
    for rec in live:
        if book.apply(rec):
            bbo = book.bbo()
            if bbo != last:
                n, last = n + 1, bbo
        book.take_trades()
    return n


def _pct(values: list[int], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))] / 1e6, 3)


# ---------------------------------------------------------------------------------------------------- worker view

HISTOGRAMS = ("orderflow_book_sent_to_publish_seconds", "orderflow_book_apply_seconds",
              "orderflow_book_checkpoint_seconds")


def worker_histograms(run: Run) -> dict[str, dict[str, float | None]]:
    """p50/p99 (bucket upper bounds, ms) of the workers' own histograms, summed over workers."""
    buckets: dict[str, dict[float, float]] = {name: {} for name in HISTOGRAMS}
    for _, port in run.workers:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        for line in text.splitlines():
            for name in HISTOGRAMS:
                if line.startswith(name + "_bucket{"):
                    le = line.split('le="', 1)[1].split('"', 1)[0]
                    bound = float("inf") if le == "+Inf" else float(le)
                    buckets[name][bound] = buckets[name].get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return {name.removeprefix("orderflow_book_"): {"count": b.get(float("inf"), 0.0), "p50_ms": _bucket_q(b, 0.5),
                                                   "p99_ms": _bucket_q(b, 0.99)} for name, b in buckets.items()}


def _bucket_q(cumulative: dict[float, float], q: float) -> float | None:
    total = cumulative.get(float("inf"), 0.0)
    for bound in sorted(cumulative):
        if total and cumulative[bound] >= q * total:
            return bound * 1000
    return None


# ---------------------------------------------------------------------------------------------------- main

def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("both", "throughput", "latency"), default="both")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--instruments", type=int, default=8, help="ESH4 copies in the throughput run")
    p.add_argument("--frame-records", type=int, default=250, help="frame size of the throughput run")
    p.add_argument("--rate", type=float, default=20_000.0, help="records/s of the latency run")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    p.add_argument("--latency-frame", type=int, default=250, help="records per frame at most in the latency run")
    p.add_argument("--linger-ms", type=float, default=1.0, help="framing linger of the latency run's producer")
    p.add_argument("--publisher", choices=("confluent", "faust"), default="confluent")
    p.add_argument("--profile", help="folder for a cProfile of each worker")
    p.add_argument("--broker-floor", action="store_true",
                   help="latency run: also read the frames topic with a plain librdkafka reader (their age when read)")
    p.add_argument("--timeline", help="latency run: write each BBO update's read time and latency here (JSON), "
                   "with the processes' ids, for bench/bursts.py")
    p.add_argument("--compression", default="lz4", choices=("lz4", "zstd", "snappy", "gzip", "none"),
                   help="compression of the frames producer (default lz4, as orderflow replay)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global COMPRESSION
    args = parse(argv)
    COMPRESSION = args.compression
    settings = load()
    loop = settings.streams_loop
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}; workers {args.workers}, "
          f"partitions {args.partitions}, publisher {args.publisher}, loop {loop}", flush=True)
    run = start(settings, args)
    try:
        if args.mode in ("both", "throughput"):
            print("throughput:", throughput(run), flush=True)
        if args.mode in ("both", "latency"):
            print("latency:", latency(run), flush=True)
        print("worker histograms:", worker_histograms(run), flush=True)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        finish(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
