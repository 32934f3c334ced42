"""Exchange ingest throughput: ten concurrent fake-exchange feeds -> ``Ingest`` -> Kafka; print the figures.

    python bench/ingest.py                          # broker of ORDERFLOW_* settings (orderflow stack up)
    python bench/ingest.py --start-stack            # a throw-away local stack (Kafka on loopback)
    python bench/ingest.py --speed 20               # paced: each feed at 20x its recorded pace (latency)
    python bench/ingest.py --ticks-only --rate 100000   # steady: 100,000 frames/s from the ten feeds together
    python bench/ingest.py --venue okx --feeds 4    # other captures
    python bench/ingest.py --no-kafka               # sockets + parsing + books only
    python bench/ingest.py --ticks-only             # the fakes leave out the book frames

The fake exchanges run in a child process (their CPU is not counted); the ingest pipeline (sockets, parsing,
books, queue, confluent-kafka with its librdkafka threads) runs in this process, whose CPU time
(``time.process_time``, all threads) is reported against the wall time from the first frame received to the
last delivery acknowledged. Latency is our receipt time (``ts_recv``) to the broker's acknowledgement, per record.
Ticks are every record published: trades, quotes and L2 book updates.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.procstat import broker_jit, broker_pid, process_cpu
from producers.exchanges import venue_class
from producers.exchanges.fake import FakeConfig, FakeExchange
from producers.exchanges.ingest import Ingest, IngestConfig
from producers.exchanges.replay import load, replay
from topics import settings
from topics.records import L2Update

ONE_SYMBOL = {("binance", 0): ["BTCUSDT"], ("binance_futures", 0): ["BTCUSDT"]}


def serve_fakes(
    venue: str, capture: int, data: Path, count: int, speed: float, rate: float, ports: Any, ready: Any,
    ticks_only: bool,
) -> None:
    """Child process: ``count`` fake exchanges of one capture on free loopback ports, until terminated."""
    logging.basicConfig(level=logging.WARNING)

    async def main() -> None:
        cls = venue_class(venue)
        frames = load(cls, data, capture)
        config = FakeConfig(speed=speed, rate=rate, exclude=cls.book_marker if ticks_only else b"")
        fakes = [FakeExchange(cls, frames, config) for _ in range(count)]
        for f in fakes:
            ports.append(await f.start(0))
        ready.set()
        await asyncio.Event().wait()

    import uvloop

    uvloop.run(main())


def expected_records(venue: str, capture: int, data: Path, ticks_only: bool) -> int:
    cls = venue_class(venue)
    symbols = ONE_SYMBOL.get((venue, capture), [])
    records = replay(cls(symbols), load(cls, data, capture), default_symbol=symbols[0] if symbols else None)
    return sum(1 for r in records if not (ticks_only and isinstance(r, L2Update)))


def make_topics(bootstrap: str, partitions: int) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    suffix = f"{os.getpid()}-{int(time.time())}"
    topics = {kind: f"bench.ingest.{kind.lower()}.{suffix}" for kind in ("TradeTick", "QuoteTick", "L2Update")}
    futures = admin.create_topics([NewTopic(t, partitions, 1) for t in topics.values()])
    for f in futures.values():
        f.result(30)
    # one record into every partition, acknowledged, before the run: a deployment's topics exist long before its
    # ticks, and a partition's first write (its log made, its leader known to the producer) is no tick's latency
    primer = Producer({"bootstrap.servers": bootstrap})
    for topic in topics.values():
        for partition in range(partitions):
            primer.produce(topic, b"{}", partition=partition)
    if primer.flush(30):
        raise SystemExit("the bench topics did not take their first records within 30 s")
    return topics


def drop_topics(bootstrap: str, topics: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.delete_topics(list(topics.values())).values():
        f.result(30)


async def measure(args: argparse.Namespace, ports: list[int], topics: dict[str, str], total: int,
                  others: dict[str, int], first: int = 0, started: Any = None) -> dict[str, Any]:
    """One ingest over ``ports``' feeds (named from ``#first`` on); ``started`` gets a note at the first frame."""
    names = [f"{args.venue}#{first + i}" for i in range(len(ports))]  # one connection (and stats, keys) per feed
    symbols = ONE_SYMBOL.get((args.venue, args.capture), [])
    config = IngestConfig(
        venues=names, bootstrap=args.bootstrap, symbols={args.venue: symbols} if symbols else {},
        endpoints={n: f"ws://127.0.0.1:{p}/ws" for n, p in zip(names, ports, strict=True)},
        queue_max=args.queue_size, topics=topics, keep_latency_samples=True, watchdog_s=60.0,
        kafka={"linger.ms": args.linger_ms} if args.linger_ms is not None else {},
    )
    ingest = Ingest(config)
    if args.no_kafka:
        ingest.publisher.publish = null_publish(ingest)  # type: ignore[method-assign]
    task = asyncio.create_task(ingest.run())
    while sum(v.stats.messages for v in ingest.venues) == 0:
        await asyncio.sleep(0.001)
    if started is not None:
        started.put(("started", os.getpid()))
    wall0, cpu0, ru0 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
    threads0, others0 = thread_cpu(), {name: process_cpu(pid) for name, pid in others.items()}
    deadline = wall0 + args.max_seconds
    while acked(ingest) < total and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    threads = {name: round(t - threads0.get(name, 0.0), 2) for name, t in thread_cpu().items()}
    beside = {name: round(process_cpu(pid) - others0[name], 2) for name, pid in others.items()}
    ru = resource.getrusage(resource.RUSAGE_SELF)
    ingest.stop()
    await task
    st = [v.stats for v in ingest.venues]
    return {
        "wall_s": wall, "cpu_s": cpu, "user_s": ru.ru_utime - ru0.ru_utime, "sys_s": ru.ru_stime - ru0.ru_stime,
        "acked": acked(ingest), "expected": total, "messages": sum(s.messages for s in st),
        "trades": sum(s.trades for s in st), "quotes": sum(s.quotes for s in st),
        "books": sum(s.book_updates for s in st), "drops": ingest.queue.dropped,
        "p50_ms": ingest.latency.quantile(0.50) * 1e3, "p99_ms": ingest.latency.quantile(0.99) * 1e3,
        "max_ms": max(ingest.latency.samples or [0.0]) * 1e3, "gaps": sum(s.gaps for s in st),
        "by_tenth": by_tenth(ingest.latency.samples or []),
        "after_first_tenth": after_first_tenth(ingest.latency.samples or []),
        "beside": beside,
        "threads": {k: v for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v >= 0.05},
        "samples": ingest.latency.samples or [],
    }


def measure_child(args: argparse.Namespace, ports: list[int], topics: dict[str, str], total: int, first: int,
                  events: Any) -> None:
    """``--processes N``: one of N ingest processes (``orderflow ingest --processes N`` deals venues the same way)."""
    import uvloop

    logging.basicConfig(level=logging.WARNING)
    events.put(("result", uvloop.run(measure(args, ports, topics, total, {}, first, events))))


def measure_processes(args: argparse.Namespace, ports: list[int], topics: dict[str, str], per_feed: int,
                      others: dict[str, int]) -> dict[str, Any]:
    """The feeds dealt among ``args.processes`` ingest processes; their figures summed, their latencies merged."""
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    shares = [ports[i::args.processes] for i in range(args.processes)]
    firsts = [sum(len(s) for s in shares[:i]) for i in range(len(shares))]
    children = [ctx.Process(target=measure_child, args=(args, share, topics, per_feed * len(share), first, events))
                for share, first in zip(shares, firsts, strict=True)]
    for child in children:
        child.start()
    results: list[dict[str, Any]] = []
    starts = 0
    others0: dict[str, float] = {}
    while len(results) < len(children):
        kind, value = events.get(timeout=args.max_seconds + 120)
        if kind == "started":
            starts += 1
            if starts == len(children):  # the figures beside it from the moment every process has its first frame
                others0 = {name: process_cpu(pid) for name, pid in others.items()}
        else:
            results.append(value)
    beside = {name: round(process_cpu(pid) - others0.get(name, 0.0), 2) for name, pid in others.items()}
    for child in children:
        child.join(30)
    return merged(results, beside)


def merged(results: list[dict[str, Any]], beside: dict[str, float]) -> dict[str, Any]:
    """Several processes' results as one run's: counts and CPU summed, the wall time the longest, latencies merged
    tenth by tenth (each process acknowledges in its own order over the same interval)."""
    out: dict[str, Any] = {k: sum(r[k] for r in results) for k in (
        "cpu_s", "user_s", "sys_s", "acked", "expected", "messages", "trades", "quotes", "books", "drops", "gaps")}
    out["wall_s"] = max(r["wall_s"] for r in results)
    samples: list[float] = []
    for tenth in range(10):
        for r in results:
            n = len(r["samples"])
            samples += r["samples"][n * tenth // 10:n * (tenth + 1) // 10]
    ordered = sorted(samples) or [0.0]
    out.update(p50_ms=ordered[len(ordered) // 2] * 1e3, p99_ms=ordered[int(len(ordered) * 0.99)] * 1e3,
               max_ms=ordered[-1] * 1e3, by_tenth=by_tenth(samples), after_first_tenth=after_first_tenth(samples),
               beside=beside, samples=samples)
    threads: dict[str, float] = {}
    for r in results:
        for name, cpu in r["threads"].items():
            threads[name] = round(threads.get(name, 0.0) + cpu, 2)
    out["threads"] = dict(sorted(threads.items(), key=lambda kv: -kv[1]))
    return out


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads so far, summed by thread name (Linux /proc)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def after_first_tenth(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) in ms of the records acknowledged after the first tenth of the run (start-up left out)."""
    rest = sorted(samples[len(samples) // 10:]) or [0.0]
    return round(rest[len(rest) // 2] * 1e3, 1), round(rest[int(len(rest) * 0.99)] * 1e3, 1)


def by_tenth(samples: list[float]) -> list[tuple[float, float]]:
    """(p50, p99) in ms of each tenth of the run, in acknowledgement order: a start-up tail or a growing backlog
    shows here."""
    step = max(1, len(samples) // 10)
    out = []
    for i in range(0, len(samples) - step + 1, step):
        part = sorted(samples[i:i + step])
        out.append((round(part[len(part) // 2] * 1e3, 1), round(part[int(len(part) * 0.99)] * 1e3, 1)))
    return out


def acked(ingest: Ingest) -> int:
    """Records acknowledged by the broker (counted as published with ``--no-kafka``)."""
    return ingest.publisher.acked


def null_publish(ingest: Ingest) -> Any:
    """``--no-kafka``: count each record as published and acknowledged at once (sockets + parsing + books only)."""
    observe, stats, publisher = ingest.latency.observe, ingest.stats, ingest.publisher

    def publish(batch: list[Any]) -> None:
        now = time.time_ns()
        for r in batch:
            stats[r.venue].published += 1
            observe((now - r.ts_recv) / 1e9)
        publisher.acked += len(batch)

    return publish


def report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    ticks = r["acked"]
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} "
          f"{platform.python_version()}, {platform.platform()}")
    pace = f"steady {args.rate:,.0f} frames/s in all" if args.rate else f"speed {args.speed or 'max'}"
    print(f"feeds: {args.feeds} x {args.venue} capture {args.capture}, {pace}, {args.processes} ingest process(es)"
          f"{', trades and quotes only' if args.ticks_only else ''}"
          f"{', no Kafka (records counted, not produced)' if args.no_kafka else ''}")
    print(f"ticks acked by Kafka: {ticks:,} of {r['expected']:,} (trades {r['trades']:,}, quotes {r['quotes']:,}, "
          f"book updates {r['books']:,}); frames {r['messages']:,}; queue drops {r['drops']:,}; gaps {r['gaps']}")
    print(f"wall {r['wall_s']:.2f} s, CPU {r['cpu_s']:.2f} s (user {r['user_s']:.2f}, sys {r['sys_s']:.2f}) "
          f"= {r['cpu_s'] / r['wall_s']:.2f} cores")
    print(f"throughput: {ticks / r['wall_s']:,.0f} ticks/s; {ticks / r['cpu_s']:,.0f} ticks per CPU-second")
    print(f"receipt-to-Kafka latency: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms")
    print("p50 / p99 (ms) by tenth of the run:", "  ".join(f"{a:g}/{b:g}" for a, b in r["by_tenth"]))
    print("p50 / p99 (ms) after the first tenth: {:g} / {:g}".format(*r["after_first_tenth"]))
    print("CPU seconds by thread:", ", ".join(f"{k} {v:g}" for k, v in r["threads"].items()))
    print("CPU seconds beside it, same interval:", ", ".join(f"{k} {v:g}" for k, v in r["beside"].items()))


def main() -> int:
    conf = settings.load()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default=conf.bootstrap_servers)
    p.add_argument("--start-stack", action="store_true", help="start a throw-away local stack for the run")
    p.add_argument("--venue", default="binance_futures")
    p.add_argument("--capture", type=int, default=0)
    p.add_argument("--feeds", type=int, default=10)
    p.add_argument("--speed", type=float, default=0.0, help="recorded pace multiplier per feed; 0 = max")
    p.add_argument("--rate", type=float, default=0.0,
                   help="a steady load: this many frames/s in all from the feeds together (instead of --speed)")
    p.add_argument("--queue-size", type=int, default=2_000_000)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--data", type=Path, default=conf.exchange_data)
    p.add_argument("--linger-ms", type=float, help="librdkafka linger.ms (default: the publisher's)")
    p.add_argument("--ticks-only", action="store_true", help="the fakes serve trades and quotes, no book frames")
    p.add_argument("--no-kafka", action="store_true", help="count records instead of producing them")
    p.add_argument("--processes", type=int, default=1,
                   help="deal the feeds among this many ingest processes (CPU summed, latencies merged)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    local = None
    if args.start_stack:
        from ops.stack.testing import start_local_stack

        local = start_local_stack()
        args.bootstrap = local.bootstrap_servers
    ctx = mp.get_context("spawn")
    manager = ctx.Manager()
    ports, ready = manager.list(), manager.Event()
    child = ctx.Process(target=serve_fakes, args=(
        args.venue, args.capture, args.data, args.feeds, args.speed, args.rate / args.feeds, ports, ready,
        args.ticks_only), daemon=True)
    child.start()
    topics: dict[str, str] = {}
    try:
        total = expected_records(args.venue, args.capture, args.data, args.ticks_only) * args.feeds
        ready.wait(120)
        topics = {} if args.no_kafka else make_topics(args.bootstrap, args.partitions)
        import uvloop

        conf = settings.load()
        broker = broker_pid(conf) if args.bootstrap == conf.bootstrap_servers else {}  # the local stack's broker
        others = {"fake exchanges": child.pid or 0, **broker}
        if broker:
            print(f"broker JIT: {broker_jit(broker['broker'])}", flush=True)
        if args.processes > 1:
            result = measure_processes(args, list(ports), topics, total // args.feeds, others)
        else:
            result = uvloop.run(measure(args, list(ports), topics, total, others))
        report(args, result)
    finally:
        child.terminate()
        if topics:
            drop_topics(args.bootstrap, topics)
        if local is not None:
            from ops.stack.testing import stop_local_stack

            stop_local_stack(local)
    return 0


if __name__ == "__main__":
    sys.exit(main())
