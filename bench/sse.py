"""Live view load: many concurrent SSE clients of one book worker on loopback while a replay plays.

    python bench/sse.py                             # 1,000 clients of /stream/books, the ESH4 open at 10x, 30 s
    python bench/sse.py --clients 200 --speed 50    # fewer clients, a faster replay
    python bench/sse.py --stream trades             # the trades stream instead
    python bench/sse.py --worker-nice -10           # (root) the worker ahead of other jobs on a shared machine
    python bench/sse.py --raw                       # the floor: bare uvloop socket writes to 1,000 connections

One worker (subprocess) on the broker of the ORDERFLOW_* settings (started with ``orderflow stack up`` if it is not
running), its own topics (``bench<hex>.``). The ESH4 day up to the Globex open (23:00) is applied first, as fast as
possible; then ``--clients`` connections are opened from ``--procs`` client processes (asyncio, raw sockets, HTTP/1.0),
and ``orderflow replay`` plays the evening from 23:00 at ``--speed`` for ``--seconds``.

Figures:
- fan-out latency, server side: the worker's ``orderflow_stream_fanout_seconds`` histogram (an output handed to the
  hub -> its event written to a client's socket), percentiles interpolated within buckets;
- fan-out latency, client side (books stream): a client's read time minus ``built_ns`` of the ``book`` event (when
  the worker built the document for the first client), so it includes the client processes' own queueing;
- events delivered, events conflated (never sent because a newer book replaced them), worker CPU (% of one core)
  and resident memory (idle, with the clients connected, at the end), the client gauge after they all reset.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import platform
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ops.stack import stack  # noqa: E402
from ops.stack.testing import create_topic, delete_topics_with_prefix, free_ports  # noqa: E402
from streams.publisher import OutputTopics  # noqa: E402
from topics import catalog  # noqa: E402
from topics.settings import Settings, load  # noqa: E402

SESSION = ROOT.parent / "shared" / "data" / "databento" / "nautilus" / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
INSTRUMENT = 17077
OPEN_NS = 1703545200 * 1_000_000_000  # 2023-12-25T23:00:00Z
BUILT = b'"built_ns":'


# ------------------------------------------------------------------ client processes


async def one_client(port: int, path: str, stop: asyncio.Event, lat: list[int], counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    counts[1] += 1
    buf = b""
    try:
        while not stop.is_set():
            chunk = await reader.read(65536)
            if not chunk:
                break
            now = time.time_ns()
            buf += chunk
            while (end := buf.find(b"\n\n")) >= 0:
                block, buf = buf[:end], buf[end + 2:]
                if block.startswith(b"id:") or b"\nevent:" in block or block.startswith(b"event:"):
                    counts[0] += 1
                    at = block.find(BUILT)
                    if at >= 0:
                        start = at + len(BUILT)
                        lat.append(now - int(block[start:block.index(b"}", start)]))
    finally:  # reset, as a closed tab or a crash would
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


async def client_main(port: int, path: str, n: int, stop_flag: Any, out: Any) -> None:
    stop = asyncio.Event()
    lat: list[int] = []
    counts = [0, 0]  # events, connected
    tasks = []
    for _ in range(n):
        tasks.append(asyncio.ensure_future(one_client(port, path, stop, lat, counts)))
        await asyncio.sleep(0.002)  # do not flood the accept queue
    while not stop_flag.is_set():
        await asyncio.sleep(0.2)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    step = max(1, len(lat) // 200_000)
    out.put({"events": counts[0], "connected": counts[1], "latencies": lat[::step], "samples": len(lat)})


def client_process(port: int, path: str, n: int, nice: int, stop_flag: Any, out: Any) -> None:
    os.nice(nice)  # the load generator yields the cores to the worker (its clients would be on other machines)
    asyncio.run(client_main(port, path, n, stop_flag, out))


# ------------------------------------------------------------------ the floor: bare socket writes


def drain_sockets(port: int, n: int) -> None:
    """Client process of ``--raw``: ``n`` connections, read and discarded until the parent ends it."""
    os.nice(10)
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select(0.5):
            with contextlib.suppress(BlockingIOError):
                key.fileobj.recv(1 << 20)  # type: ignore[union-attr]


async def raw_writes(clients: int, size: int, rounds: int) -> None:
    """A uvloop ``transport.write`` of ``size`` bytes to each of ``clients`` loopback sockets, ``rounds`` times:
    what one client write costs without the hub (the lower bound of a fan-out pass)."""
    transports: list[asyncio.Transport] = []
    ready = asyncio.Event()

    class Accept(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transports.append(transport)  # type: ignore[arg-type]
            if len(transports) == clients:
                ready.set()

    server = await asyncio.get_running_loop().create_server(Accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proc = mp.get_context("spawn").Process(target=drain_sockets, args=(port, clients), daemon=True)
    proc.start()
    await ready.wait()
    data = b"x" * size
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.thread_time()
        for transport in transports:
            transport.write(data)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        print(f"{clients} writes of {size} B: {1e3 * wall:.1f} ms wall, {1e6 * cpu / clients:.1f} µs CPU per write")
        await asyncio.sleep(0.2)
    proc.terminate()
    server.close()


# ------------------------------------------------------------------ worker, replay, measurements


def start_worker(settings: Settings, prefix: str, workdir: Path, port: int, nice: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "streams.cli", "--log-format", "text", "--log-level", "WARNING", "worker",
           "--web-port", str(port), "--workdir", str(workdir / "w"), "--app-id", f"{prefix}books",
           "--topic-prefix", prefix]
    log = (workdir / "worker.log").open("ab")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ},
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)


def replay(settings: Settings, topic: str, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "streams.cli", "--log-format", "text", "--log-level", "WARNING", "replay",
           str(SESSION), "--topic", topic, "--bootstrap", settings.bootstrap_servers, "--no-control",
           "--no-progress", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def wait(what: str, check: Any, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.2)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def histogram_quantile(text: str, name: str, q: float) -> float:
    """The q-quantile of a Prometheus histogram, interpolated linearly within its bucket."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    if not total:
        return float("nan")
    rank, low, below = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return low
            return low + (le - low) * (rank - below) / max(count - below, 1e-9)
        low, below = le, count
    return low


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def run(args: argparse.Namespace) -> int:
    settings = load()
    stack.up(settings)
    prefix = f"bench{os.urandom(3).hex()}."
    topics = OutputTopics.with_prefix(prefix)
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-bench-sse-"))
    create_topic(settings, topics.frames, 1, catalog.MBO_FRAMES.config())
    for name, spec in ((topics.bbo, catalog.BOOK_BBO), (topics.mbp10, catalog.BOOK_MBP10),
                       (topics.trades, catalog.BOOK_TRADES), (topics.anomalies, catalog.BOOK_ANOMALIES),
                       (topics.deadletter, catalog.DEAD_LETTER)):
        create_topic(settings, name, spec.partitions, spec.config())
    port = free_ports(1)[0]
    worker = start_worker(settings, prefix, workdir, port, args.worker_nice)
    base = f"http://127.0.0.1:{port}"
    ctx = mp.get_context("spawn")
    stop_flag, out = ctx.Event(), ctx.Queue()
    procs: list[Any] = []
    try:
        wait("the worker healthy", lambda: healthy(port))
        replay(settings, topics.frames, "--end", str(OPEN_NS)).wait()
        wait("the day before the open applied",
             lambda: metric(get(base + "/metrics"), "orderflow_book_consumer_lag") == 0 and
             metric(get(base + "/metrics"), "orderflow_book_records_applied_total") > 9000)
        rss_idle = rss_mb(worker.pid)
        path = f"/stream/{args.stream}/{INSTRUMENT}" + ("?depth=10" if args.stream == "books" else "")
        per = [args.clients // args.procs + (1 if i < args.clients % args.procs else 0) for i in range(args.procs)]
        for n in per:
            proc = ctx.Process(target=client_process, args=(port, path, n, args.client_nice, stop_flag, out))
            proc.start()
            procs.append(proc)
        connect_started = time.monotonic()
        wait(f"{args.clients} clients connected",
             lambda: metric(get(base + "/metrics"), "orderflow_stream_clients") >= args.clients)
        connect_s = time.monotonic() - connect_started
        rss_connected = rss_mb(worker.pid)
        before = get(base + "/metrics")
        cpu0, t0 = cpu_seconds(worker.pid), time.monotonic()
        end_ns = OPEN_NS + int(args.seconds * args.speed * 1e9)
        feed = replay(settings, topics.frames, "--start", str(OPEN_NS), "--end", str(end_ns), "--speed",
                      str(args.speed))
        feed.wait()
        time.sleep(2.0)  # the last frames reach the clients
        cpu1, t1 = cpu_seconds(worker.pid), time.monotonic()
        rss_end = rss_mb(worker.pid)
        after = get(base + "/metrics")
        stop_flag.set()
        results = [out.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
        wait("the client gauge back at 0", lambda: metric(get(base + "/metrics"), "orderflow_stream_clients") == 0,
             timeout=60)
        gauge_zero_s = time.monotonic() - t1
        report(args, before, after, results, (cpu1 - cpu0) / (t1 - t0), (rss_idle, rss_connected, rss_end),
               connect_s, gauge_zero_s, t1 - t0)
        return 0
    finally:
        stop_flag.set()
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
        delete_topics_with_prefix(settings, prefix)  # the worker's internal topics (changelog, assignor) too
        shutil.rmtree(workdir, ignore_errors=True)


def report(args: argparse.Namespace, before: str, after: str, results: list[dict[str, Any]], cpu: float,
           rss: tuple[float, float, float], connect_s: float, gauge_zero_s: float, seconds: float) -> None:
    stream = args.stream
    sent = metric(after, f'orderflow_stream_events_sent_total{{stream="{stream}"}}') - \
        metric(before, f'orderflow_stream_events_sent_total{{stream="{stream}"}}')
    conflated = metric(after, f'orderflow_stream_events_conflated_total{{stream="{stream}"}}') - \
        metric(before, f'orderflow_stream_events_conflated_total{{stream="{stream}"}}')
    outputs = metric(after, "orderflow_book_outputs_total") - metric(before, "orderflow_book_outputs_total")
    lat = [v for r in results for v in r["latencies"]]
    received = sum(r["events"] for r in results)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"command: python bench/sse.py --clients {args.clients} --stream {stream} --speed {args.speed} "
          f"--seconds {args.seconds} --procs {args.procs} --client-nice {args.client_nice} "
          f"--worker-nice {args.worker_nice}")
    print(f"clients connected: {sum(r['connected'] for r in results):,} of {args.clients:,} "
          f"(all on the gauge in {connect_s:.1f} s)")
    print(f"replay: {seconds:.1f} s wall, worker outputs {outputs:,.0f} ({outputs / seconds:,.0f}/s)")
    print(f"events sent by the hub: {sent:,.0f} ({sent / seconds:,.0f}/s), received by the clients: {received:,}, "
          f"conflated: {conflated:,.0f}")
    for name, what in (("fanout", "fan-out latency, server (output -> written to the socket)"),
                       ("pass", "one fan-out pass (all clients of the instrument)")):
        metric_name = f"orderflow_stream_{name}_seconds"
        passes = metric(after, metric_name + "_count") - metric(before, metric_name + "_count")
        print(f"{what}: p50 {1e3 * histogram_quantile(after, metric_name, 0.5):.2f} ms, "
              f"p99 {1e3 * histogram_quantile(after, metric_name, 0.99):.2f} ms ({passes:,.0f} observations)")
    if lat:
        print(f"fan-out latency, client (built -> read, {len(lat):,} samples): p50 {percentile(lat, 0.5):.2f} ms, "
              f"p99 {percentile(lat, 0.99):.2f} ms, max {percentile(lat, 1.0):.2f} ms")
    cpu_pass = metric(after, "orderflow_stream_pass_cpu_seconds_total") - \
        metric(before, "orderflow_stream_pass_cpu_seconds_total")
    writes = metric(after, "orderflow_stream_pass_writes_total") - metric(before, "orderflow_stream_pass_writes_total")
    if writes:
        print(f"fan-out CPU (event loop thread): {cpu_pass:.2f} s for {writes:,.0f} client writes = "
              f"{1e6 * cpu_pass / writes:.1f} µs per client write")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    print(f"worker CPU: {100 * cpu:.0f}% of one core; RSS idle {rss[0]:.0f} MB, with the clients {rss[1]:.0f} MB, "
          f"at the end {rss[2]:.0f} MB")
    print(f"client gauge back at 0 {gauge_zero_s:.1f} s after the clients reset their connections")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--procs", type=int, default=2, help="client processes")
    p.add_argument("--stream", choices=("books", "trades"), default="books")
    p.add_argument("--speed", type=float, default=10.0, help="replay speed (x recorded pace)")
    p.add_argument("--seconds", type=float, default=30.0, help="wall seconds of replay")
    p.add_argument("--client-nice", type=int, default=10, help="nice increment of the client processes")
    p.add_argument("--raw", action="store_true", help="only time bare socket writes to --clients connections")
    p.add_argument("--worker-nice", type=int, default=0,
                   help="nice increment of the worker (negative, as root: ahead of other jobs on a shared machine)")
    return p.parse_args(argv)


def main() -> int:
    args = parse()
    if args.raw:
        import uvloop

        uvloop.install()
        asyncio.run(raw_writes(args.clients, 700, 5))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
