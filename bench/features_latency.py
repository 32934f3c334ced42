"""Tick-to-signal latency of the features worker: exchange ticks -> broker -> `orderflow features` -> regime signals.

    python bench/features_latency.py                          # 20,000 ticks/s, 40 instruments, 60 s
    python bench/features_latency.py --rate 5000 --seconds 40
    python bench/features_latency.py --backlog 100000     # throughput: how fast the worker reads a backlog
    python bench/features_latency.py --broker-floor       # also: the ticks' age at a plain librdkafka reader

Trade and quote ticks of ``--instruments`` synthetic instruments (a random walk each) are published to
``ticks.trades`` and ``ticks.quotes`` at ``--rate`` ticks/s, paced in 5 ms steps, each with ``ts_recv`` and
``ts_event`` set to the wall clock as it is sent (live data); the ticks of one key in one step go in one frame, as
the exchange ingest publishes them (``--single``: one tick per message), with the ingest's producer linger
(``ORDERFLOW_EXCHANGE_LINGER_MS``, 5 ms by default). The worker closes 1 s bars (and 60 s bars);
``ORDERFLOW_FEATURES_REGIME_FIT_BARS=10`` lets the volatility regime start after 20 bars. A reader process reads
``signals.regime`` from its end and notes when each signal arrived.

Latency of a signal of the bar ending at ``e``: its read time minus the send time of the first tick with
``ts_recv >= e`` in the instrument's partition group (the tick that lets the bar close: before it, the bar may
still receive ticks). Signals of the first ``--warmup`` seconds are left out. The worker's own histogram
(``orderflow_features_tick_to_signal_seconds``: ts_recv of the closing tick -> bars and signals handed to the
producer) is printed too. Topics, worker and data are removed at the end; the broker is the one of the
ORDERFLOW_* settings (started with ``orderflow stack up`` if it is not running).
"""

from __future__ import annotations

import argparse
import bisect
import multiprocessing as mp
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
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
from streams.features_group import FeatureTopics  # noqa: E402
from streams.pipeline import get_json  # noqa: E402
from topics import catalog  # noqa: E402
from topics.codec import encode, encode_frame  # noqa: E402
from topics.records import QuoteTick, RegimeSignal, TradeTick  # noqa: E402
from topics.settings import Settings, load  # noqa: E402

SECOND = 1_000_000_000
STEP_S = 0.005
SIGNAL = msgspec.json.Decoder(RegimeSignal)


def read_signals(bootstrap: str, topic: str, seconds: float, ready: Any, out: Any) -> None:
    """Child process: (instrument, interval, bar end, read time) of every signal until ``seconds`` pass."""
    consumer = consumer_at_end(bootstrap, [topic], "signals")
    ready.set()
    seen: list[tuple[str, int, int, int]] = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        for msg in arrived(consumer, 0.05):  # as soon as they arrive (see bench.reading)
            if msg.error():
                continue
            now = time.time_ns()
            s = SIGNAL.decode(msg.value() or b"")
            seen.append((s.instrument, s.interval_ns, s.ts_event, now))
    consumer.close()
    out.send(seen)


class Ticks:
    """Paced trade and quote ticks of synthetic instruments; remembers what was sent when, per partition."""

    def __init__(self, bootstrap: str, topics: FeatureTopics, instruments: int, single: bool = False,
                 linger_ms: float = 5.0) -> None:
        self.topics = topics
        self.single = single
        self.symbols = [f"S{i:03d}" for i in range(instruments)]
        self.mid = [100.0 + i for i in range(instruments)]
        self.partition: dict[str, int] = {}
        self.sent: dict[int, list[int]] = {}  # partition -> send times (= ts_recv), increasing
        self.rng = random.Random(1)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms,
                                  "partitioner": "murmur2_random", "enable.idempotence": True,
                                  "compression.type": "lz4"})

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self.partition[msg.key().decode()] = msg.partition()

    def send(self, n: int) -> None:
        """``n`` ticks, published as the exchange ingest publishes them: one frame (a JSON array) per key and
        topic with that key's ticks of this step, in order (``--single`` publishes one tick per message)."""
        frames: dict[tuple[str, str], list[Any]] = {}
        for _ in range(n):
            i = self.rng.randrange(len(self.symbols))
            symbol = self.symbols[i]
            self.mid[i] *= 1.0 + self.rng.gauss(0.0, 2e-4)
            px = int(self.mid[i] * 1e4) * 100_000  # 1e-9 fixed point on a 1e-4 grid
            now = time.time_ns()
            key = f"bench:{symbol}"
            if self.rng.random() < 0.3:
                rec: Any = TradeTick(venue="bench", symbol=symbol, ts_event=now, ts_recv=now, price=px,
                                     size=SECOND, side="B" if self.rng.random() < 0.5 else "A", trade_id=str(now))
                topic = self.topics.tick_trades
            else:
                rec = QuoteTick(venue="bench", symbol=symbol, ts_event=now, ts_recv=now, bid_px=px - 100_000,
                                bid_sz=SECOND, ask_px=px + 100_000, ask_sz=SECOND)
                topic = self.topics.tick_quotes
            if self.single:
                self._produce(topic, key, encode(rec))
            else:
                frames.setdefault((topic, key), []).append(rec)
            part = self.partition.get(key)
            if part is not None:
                self.sent.setdefault(part, []).append(now)
        for (topic, key), recs in frames.items():
            self._produce(topic, key, encode_frame(recs))
        self.producer.poll(0)

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        callback = self._delivered if key not in self.partition else None
        self.producer.produce(topic, value, key.encode(), on_delivery=callback)

    def run(self, rate: float, seconds: float) -> int:
        started = time.monotonic()
        count = 0
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) - count
            if due > 0:
                self.send(due)
                count += due
            time.sleep(STEP_S)
        self.producer.flush(30)
        return count


def latencies(ticks: Ticks, signals: list[tuple[str, int, int, int]], after_ns: int) -> list[float]:
    """Seconds from the first tick at or after each bar end, in the instrument's group, to its signal's arrival."""
    out = []
    for instrument, _interval, end, read in signals:
        if end < after_ns:
            continue
        sent = ticks.sent.get(ticks.partition.get(instrument, -1), [])
        i = bisect.bisect_left(sent, end)
        if i < len(sent):
            out.append((read - sent[i]) / 1e9)
    return out


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def start_worker(settings: Settings, prefix: str, workdir: Path, port: int,
                 profile: str = "", index: int = 0) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ORDERFLOW_FEATURES_REGIME_FIT_BARS": "10"}
    python = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
    cmd = [*python, "-m", "streams.cli", "--log-format", "text", "--log-level", "WARNING", "features",
           "--web-port", str(port), "--workdir", str(workdir / f"w{index or ''}"), "--app-id", f"{prefix}features",
           "--topic-prefix", prefix]
    log = (workdir / "features.log").open("ab")  # every worker's lines, in one file
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the features worker exited; see {workdir / 'features.log'}")
        if healthy(port):
            return proc
        if time.monotonic() > deadline:
            raise SystemExit(f"the features worker is not healthy; see {workdir / 'features.log'}")
        time.sleep(0.2)


def settle(ports: list[int], seconds: float = 180.0) -> None:
    """Wait until every worker answers /health with 200 three times in a row (the group has rebalanced)."""
    deadline, streak = time.monotonic() + seconds, 0
    while streak < 3:
        if time.monotonic() > deadline:
            raise SystemExit("the features workers did not settle into one group")
        streak = streak + 1 if all(healthy(p) for p in ports) else 0
        time.sleep(1.0)


def healthy(port: int) -> bool:
    return get_json(f"http://127.0.0.1:{port}/health")[0] == 200


def histogram_buckets(port: int, name: str, label: str = "") -> dict[float, float]:
    """Cumulative bucket counts (upper bound -> count, in the exposition's order) of a histogram of the worker's
    /metrics; ``label``: a label pair its bucket lines must carry, e.g. ``generation="2"``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{") and label in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def worker_histogram(port: int, name: str) -> dict[str, float | None]:
    """p50 and p99 (bucket upper bounds) of a histogram of the worker's /metrics."""
    buckets = list(histogram_buckets(port, name).items())
    total = buckets[-1][1] if buckets else 0.0
    out: dict[str, float | None] = {"count": total}
    for q in (0.5, 0.99):
        out[f"p{int(q * 100)}"] = next((le for le, c in buckets if total and c >= q * total), None)
    return out


def full_gc_buckets(port: int) -> dict[float, float]:
    """Cumulative bucket counts of the worker's full (generation 2) garbage-collector pauses so far."""
    return histogram_buckets(port, "orderflow_features_gc_pause_seconds", 'generation="2"')


def full_gc_during(before: dict[float, float], after: dict[float, float]) -> str:
    """The full collections between two readings: how many, and the bucket bound of the median and the longest."""
    run = {le: after[le] - before.get(le, 0.0) for le in after}
    total = run.get(float("inf"), 0.0)
    if not total:
        return "none"
    bounds = sorted(run)
    median = next(le for le in bounds if run[le] >= total / 2)
    longest = next(le for le in bounds if run[le] >= total)
    return f"{total:.0f}, median <= {median * 1e3:g} ms, longest <= {longest * 1e3:g} ms"


def metric_total(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


def backlog(port: int, sent: int) -> None:
    """Time how long the worker, started after ``sent`` ticks were published, takes to read them: from its first
    record to the last."""
    first = last = None
    stop = time.monotonic() + 600
    shown = time.monotonic()
    while time.monotonic() < stop:
        done = metric_total(port, "orderflow_features_records_total")
        now = time.monotonic()
        if now - shown >= 5:
            shown = now
            print(f"  read {done:,.0f} of {sent:,}", flush=True)
        if done and first is None:
            first = (now, done)
        if done >= sent:
            last = (now, done)
            break
        time.sleep(0.1)
    if first is None or last is None:
        print(f"the worker did not read the backlog of {sent:,} ticks in 600 s", flush=True)
        return
    rate = (last[1] - first[1]) / max(1e-9, last[0] - first[0])
    print(f"backlog: {sent:,} ticks read at {rate:,.0f} ticks/s", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=20_000.0, help="ticks per second (default 20,000)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long ticks are sent (default 60)")
    p.add_argument("--warmup", type=float, default=25.0, help="signals of bars ending before this are left out")
    p.add_argument("--instruments", type=int, default=40, help="synthetic instruments (default 40)")
    p.add_argument("--backlog", type=int, default=0, help="instead: publish this many ticks, time their reading")
    p.add_argument("--single", action="store_true", help="one tick per message (default: frames per key and step)")
    p.add_argument("--broker-floor", action="store_true",
                   help="also read the tick topics with a plain librdkafka reader and print their age when read")
    p.add_argument("--profile", default="", help="run the worker under cProfile, its stats written to this file")
    p.add_argument("--workers", type=int, default=1, help="features workers in the group (they split the partitions)")
    args = p.parse_args(argv)
    settings = load()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}; {args.instruments} instruments, "
          + (f"backlog of {args.backlog:,} ticks" if args.backlog else
             f"rate {args.rate:,.0f} ticks/s for {args.seconds:.0f} s"), flush=True)
    stack.up(settings)
    print(stack_line(settings, settings.features_intake), flush=True)
    prefix = f"bench{os.urandom(3).hex()}."
    topics = FeatureTopics.with_prefix(prefix)
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-bench-"))
    specs = {topics.bbo: catalog.BOOK_BBO, topics.mbp10: catalog.BOOK_MBP10, topics.book_trades: catalog.BOOK_TRADES,
             topics.tick_trades: catalog.TICKS_TRADES, topics.tick_quotes: catalog.TICKS_QUOTES,
             topics.bars: catalog.FEATURES_BARS, topics.signals: catalog.SIGNALS_REGIME,
             topics.deadletter: catalog.DEAD_LETTER}
    for name, spec in specs.items():
        create_topic(settings, name, spec.partitions, spec.config())
    ports = free_ports(args.workers)
    port = ports[0]
    sent = 0
    if args.backlog:  # published before the worker starts, so that it reads a backlog from the first record
        sent = Ticks(settings.bootstrap_servers, topics, args.instruments, args.single,
                     settings.exchange_linger_ms).run(args.backlog / 10.0, 10.0)
    procs = [start_worker(settings, prefix, workdir, port, str(Path(args.profile).resolve()) if args.profile else "")]
    try:
        for i, extra in enumerate(ports[1:], start=1):
            procs.append(start_worker(settings, prefix, workdir, extra, index=i))
        if len(procs) > 1:
            settle(ports)
        if args.backlog:
            backlog(port, sent)
            return 0
        ready, (recv, send) = mp.Event(), mp.Pipe(duplex=False)
        reader = mp.Process(target=read_signals, args=(settings.bootstrap_servers, topics.signals,
                                                       args.seconds + 10, ready, send))
        reader.start()
        ready.wait(30)
        floor = None
        if args.broker_floor:
            floor_ready, (floor_recv, floor_send) = mp.Event(), mp.Pipe(duplex=False)
            floor = mp.Process(target=read_ages, args=(
                settings.bootstrap_servers, [topics.tick_trades, topics.tick_quotes], args.seconds, args.warmup,
                floor_ready, floor_send))
            floor.start()
            floor_ready.wait(30)
        ticks = Ticks(settings.bootstrap_servers, topics, args.instruments, args.single, settings.exchange_linger_ms)
        started = time.time_ns()
        workers = {f"worker {i + 1}": w.pid for i, w in enumerate(procs)}
        pids = {**workers, "bench (producer)": os.getpid(), **broker_pid(settings)}
        cpu0 = {name: process_cpu(pid) for name, pid in pids.items()}
        gc0 = [full_gc_buckets(p) for p in ports]
        sent = ticks.run(args.rate, args.seconds)
        gc1 = [full_gc_buckets(p) for p in ports]
        cpu = {name: round(process_cpu(pid) - cpu0[name], 1) for name, pid in pids.items()}
        signals = recv.recv()
        reader.join(30)
        ages = floor_recv.recv() if floor is not None else []
        lat = latencies(ticks, signals, started + int(args.warmup * SECOND))
        print(f"ticks sent: {sent:,} ({sent / args.seconds:,.0f}/s); signals read: {len(signals):,}; "
              f"measured after warm-up: {len(lat):,}", flush=True)
        print("tick -> signal on its topic (s): " + ", ".join(
            f"p{int(q * 100)} {pct(lat, q) or float('nan'):.4f}" for q in (0.5, 0.9, 0.99)) +
            f", max {max(lat, default=float('nan')):.4f}", flush=True)
        for i, wport in enumerate(ports):
            name = "worker" if len(ports) == 1 else f"worker {i + 1}"
            print(f"{name} tick_to_signal (ts_recv -> handed to producer, bucket bounds):",
                  worker_histogram(wport, "orderflow_features_tick_to_signal_seconds"), flush=True)
            print(f"{name} bar_compute (closing records: bar series, regimes, signals):",
                  worker_histogram(wport, "orderflow_features_bar_compute_seconds"), flush=True)
            print(f"{name} bar_features (the other features of one group's closed bars):",
                  worker_histogram(wport, "orderflow_features_bar_features_seconds"), flush=True)
            print(f"{name} arrival_lag (Kafka timestamp of a batch's first record -> the agent):",
                  worker_histogram(wport, "orderflow_features_arrival_lag_seconds"), flush=True)
            print(f"{name} full garbage collections while the ticks were sent:",
                  full_gc_during(gc0[i], gc1[i]), flush=True)
        if floor is not None:
            floor.join(30)
            print(f"broker floor (a plain librdkafka reader of the tick topics, after warm-up: read time - Kafka "
                  f"timestamp, {len(ages):,} ticks, ms): " + ", ".join(
                      f"{k} {v:.1f}" for k, v in floor_figures(ages).items()), flush=True)
        print(f"CPU seconds while the ticks were sent ({args.seconds:.0f} s): "
              + ", ".join(f"{k} {v:g}" for k, v in cpu.items()), flush=True)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        delete_topics_with_prefix(settings, prefix)  # the worker's internal topics (changelog, assignor) too
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
