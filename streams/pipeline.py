"""``orderflow run``: the whole pipeline on one machine, for a demo or a first look.

1. the local stack (Kafka and PostgreSQL) comes up if it is not running (``ops.stack``);
2. N book workers start as subprocesses in one consumer group, each with its own web port and data folder; beside
   them (each can be left out): the database schema is migrated and ``orderflow sink`` stores every output topic,
   ``orderflow features`` computes feature bars and regimes, and ``orderflow ingest`` takes the ticks of a fake
   exchange (``orderflow fake-exchange`` serving a recorded capture on loopback);
3. once they report healthy, ``orderflow replay`` publishes the sample session (ESH4, 2023-12-25) into mbo.frames;
4. a summary says where to look (views, the web page, topics, SQL) and a progress line follows;
5. Ctrl-C stops the replay, then the services (each checkpoints and commits), and the stack only with ``--down``.

Children run in their own sessions so that Ctrl-C reaches this process only and the shutdown order is ours.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from streams.errors import RunError
from topics import catalog
from topics.settings import PROJECT_ROOT, Settings, load

SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "databento" / "nautilus" / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
PROGRESS_EVERY_S = 5.0
FAKE_EXCHANGE = "fake exchange"
MAX_RESTARTS = 3  # a worker or service that fails is started again this many times before the run gives up
OUTPUT_TOPICS = (catalog.BOOK_BBO, catalog.BOOK_MBP10, catalog.BOOK_TRADES, catalog.BOOK_ANOMALIES,
                 catalog.DEAD_LETTER)
# what the demo's sink stores: every output topic (feature bars are one feature_vectors row each)
SINK_TOPICS = (catalog.BOOK_BBO, catalog.BOOK_MBP10, catalog.BOOK_TRADES, catalog.BOOK_ANOMALIES,
               catalog.TICKS_TRADES, catalog.TICKS_QUOTES, catalog.FEATURES_BARS, catalog.SIGNALS_REGIME)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int | None = None
    health: str | None = "/health"  # the path answering 200 once the service is ready (None: none)
    cmd: list[str] = field(default_factory=list)  # how it was started (a failed child is started again)
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None


def main(args: argparse.Namespace) -> int:
    settings = load()
    sample = Path(args.file) if args.file else SAMPLE
    if not sample.is_file():
        raise RunError(f"no session file at {sample}; pass one with --file")
    if args.workers < 1:
        raise RunError(f"--workers must be at least 1, got {args.workers}")
    for sig in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored (a background job)
        signal.signal(sig, _interrupt)
    stack_up(settings)
    workers: list[Child] = []
    services: list[Child] = []
    replay: Child | None = None
    try:
        workers = [start_worker(settings, i) for i in range(args.workers)]
        services = start_services(settings, args)
        await_healthy(workers + [c for c in services if c.health])
        replay = start_replay(settings, sample, args.speed)
        print_summary(settings, workers, services, replay, sample)
        return supervise(workers, services, replay, args.no_wait)
    except KeyboardInterrupt:
        print("\nstopping (Ctrl-C) ...", flush=True)
        return 0
    finally:
        shutdown(settings, workers, services, replay, args.down)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stack_up(settings: Settings) -> None:
    from ops.stack import StackError, stack

    try:
        report = stack.up(settings)
    except StackError as e:
        raise RunError(f"the local stack did not start: {e}") from e
    for line in report.lines:
        print(line, flush=True)


def _spawn(name: str, cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    out: IO[bytes] = log.open("ab")
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=PROJECT_ROOT, start_new_session=True)
    except OSError as e:
        raise RunError(f"could not start {name}: {e}") from e
    finally:
        out.close()


def _start(name: str, cmd: list[str], log: Path, port: int | None = None, health: str | None = "/health") -> Child:
    return Child(name, _spawn(name, cmd, log), log, port, health, cmd)


def restart_failed(children: list[Child], most: int = MAX_RESTARTS) -> None:
    """Start again every child that exited with an error (a worker stops itself on faults it cannot mend, for its
    supervisor to restart it); raise :class:`RunError` for one that already failed ``most`` times."""
    for child in children:
        if child.alive() or child.proc.returncode == 0:
            continue
        code = child.proc.returncode
        if child.restarts >= most or not child.cmd:
            raise RunError(f"{child.name} exited with {code} (restarted {child.restarts} times); see {child.log}:\n"
                           f"{tail(child.log)}")
        child.restarts += 1
        print(f"{time.strftime('%H:%M:%S')} {child.name} exited with {code}; starting it again "
              f"({child.restarts} of {most}); see {child.log}", flush=True)
        child.proc = _spawn(child.name, child.cmd, child.log)


def start_worker(settings: Settings, index: int) -> Child:
    port = settings.streams_web_port + index
    log = Path(settings.home) / "logs" / f"worker-{index + 1}.log"
    cmd = [sys.executable, "-m", "streams.cli", "--log-format", "text", "worker", "--web-port", str(port)]
    return _start(f"worker {index + 1}", cmd, log, port)


def _orderflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "streams.cli", "--log-format", "text", *args]


def start_services(settings: Settings, args: argparse.Namespace) -> list[Child]:
    """The sink (after the schema migration), the features worker, and the tick ingest from a fake exchange."""
    logs = Path(settings.home) / "logs"
    services = []
    if not args.no_sink:
        migrate(logs / "db-migrate.log")
        port = settings.sink_metrics_port
        topics = [arg for t in SINK_TOPICS for arg in ("--topic", t.name)]
        services.append(_start("sink", _orderflow("sink", "--metrics-port", str(port), *topics), logs / "sink.log",
                               port))
    if not args.no_features:
        port = settings.features_web_port
        services.append(_start("features", _orderflow("features", "--web-port", str(port)), logs / "features.log",
                               port))
    if args.exchange != "none":
        fake_port = free_port()
        fake_cmd = _orderflow("fake-exchange", "--venue", args.exchange, "--port", str(fake_port))
        services.append(_start(FAKE_EXCHANGE, fake_cmd, logs / "fake-exchange.log", fake_port, health=None))
        port = settings.exchange_metrics_port
        ingest_cmd = _orderflow("ingest", "--venues", args.exchange, "--metrics-port", str(port),
                                "--endpoint-override", f"{args.exchange}=ws://127.0.0.1:{fake_port}")
        services.append(_start("ingest", ingest_cmd, logs / "ingest.log", port))
    return services


def migrate(log: Path) -> None:
    """``orderflow db migrate``, to completion: the sink's tables exist before it starts."""
    proc = _spawn("db migrate", _orderflow("db", "migrate"), log)
    if proc.wait(timeout=READY_TIMEOUT_S) != 0:
        raise RunError(f"orderflow db migrate failed ({proc.returncode}); see {log}:\n{tail(log)}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_replay(settings: Settings, sample: Path, speed: str | None) -> Child:
    log = Path(settings.home) / "logs" / "replay.log"
    cmd = [sys.executable, "-m", "streams.cli", "--log-format", "text", "replay", str(sample), "--no-progress"]
    if speed:
        cmd += ["--speed", speed]
    return Child("replay", _spawn("replay", cmd, log), log, settings.replay_control_port or None)


def get_json(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, {}
    except (OSError, ValueError):
        return 0, {}


def await_healthy(children: list[Child]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = list(children)
    print(f"waiting for {', '.join(c.name for c in children)} to be ready (workers join the group and restore "
          f"their books) ...", flush=True)
    while waiting:
        for w in list(waiting):
            if not w.alive():
                raise RunError(f"{w.name} exited with {w.proc.returncode}; see {w.log}:\n{tail(w.log)}")
            if get_json(w.url + (w.health or "/health"))[0] == 200:
                waiting.remove(w)
        if waiting and time.monotonic() > deadline:
            raise RunError(f"{', '.join(w.name for w in waiting)} not healthy after {READY_TIMEOUT_S:.0f} s; "
                           f"see {waiting[0].log}")
        time.sleep(0.25)


def print_summary(settings: Settings, workers: list[Child], services: list[Child], replay: Child,
                  sample: Path) -> None:
    home = Path(settings.home)
    lines = ["", f"orderflow is running: {len(workers)} book worker(s), replaying {sample.name}", ""]
    for w in workers:
        lines.append(f"  {w.name}: {w.url}/books  {w.url}/books/17077?depth=10  {w.url}/health  "
                     f"{w.url}/metrics   (log {w.log})")
    lines.append(f"  live page (depth, trades, playback): {workers[0].url}/view   "
                 f"SSE: {workers[0].url}/stream/books/17077")
    lines += [_service_line(settings, c) for c in services]
    if replay.port:
        lines.append(f"  replay control: curl -X POST http://127.0.0.1:{replay.port}/pause  (/resume, "
                     f"/speed?x=10, GET /status)   (log {replay.log})")
    lines += ["", f"  Kafka {settings.bootstrap_servers}: {catalog.MBO_FRAMES.name} -> "
              + ", ".join(t.name for t in OUTPUT_TOPICS), "  watch the BBO as it changes:"]
    env = "" if home == PROJECT_ROOT / ".orderflow" else f"ORDERFLOW_HOME={home} "
    lines.append(f"    {env}ops/kafka/bin/kafka-console-consumer --bootstrap-server {settings.bootstrap_servers} "
                 f"--topic {catalog.BOOK_BBO.name} --property print.key=true")
    lines += ["", "Ctrl-C stops the replay and the workers (the stack keeps running; `orderflow stack down`).", ""]
    print("\n".join(lines), flush=True)


def _service_line(settings: Settings, c: Child) -> str:
    if c.name == "features":
        return (f"  features: {c.url}/features  {c.url}/features/17077  {c.url}/regimes  "
                f"{c.url}/stream/features/17077  {c.url}/metrics  (log {c.log})")
    if c.name == "sink":
        return (f"  sink -> PostgreSQL: {c.url}/metrics  (log {c.log});  try: psql \"{settings.pg_dsn}\" -c "
                f"'select * from bbo order by ts desc limit 5'")
    if c.name == "ingest":
        return f"  ingest: {c.url}/metrics  ticks.trades, ticks.quotes, ticks.book  (log {c.log})"
    return f"  {c.name}: 127.0.0.1:{c.port}  (log {c.log})"


def progress(workers: list[Child]) -> tuple[float, float]:
    """(records applied, frames lag) summed over the workers, from their /metrics."""
    applied = lag = 0.0
    for w in workers:
        try:
            with urllib.request.urlopen(w.url + "/metrics", timeout=3) as response:
                text = response.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("orderflow_book_records_applied_total "):
                applied += float(line.split()[-1])
            elif line.startswith("orderflow_book_consumer_lag{"):
                lag += float(line.split()[-1])
    return applied, lag


def supervise(workers: list[Child], services: list[Child], replay: Child, no_wait: bool) -> int:
    """Report progress until Ctrl-C; with ``no_wait``, until the replay ended and the workers caught up."""
    last_report = time.monotonic()
    last_applied = -1.0
    while True:
        time.sleep(0.5)
        restart_failed(workers + services)
        replay_done = not replay.alive()
        if replay_done and replay.proc.returncode not in (0, None):
            raise RunError(f"the replay failed ({replay.proc.returncode}); see {replay.log}:\n{tail(replay.log)}")
        if time.monotonic() - last_report >= PROGRESS_EVERY_S or (no_wait and replay_done):
            applied, lag = progress(workers)
            state = "replay done" if replay_done else "replaying"
            print(f"{time.strftime('%H:%M:%S')} {state}: {applied:,.0f} records applied, lag {lag:,.0f} frames",
                  flush=True)
            last_report = time.monotonic()
            if no_wait and replay_done and lag == 0 and applied == last_applied:
                behind = sink_behind(services)
                if behind == 0:
                    return 0
                left = "not measured yet" if behind is None else f"{behind:,} book messages to store"
                print(f"{time.strftime('%H:%M:%S')} waiting for the sink: {left}", flush=True)
            last_applied = applied


def sink_behind(services: list[Child]) -> int | None:
    """Book output messages the sink has not stored yet (0 with no sink; None while it has not measured)."""
    sink = next((c for c in services if c.name == "sink"), None)
    if sink is None:
        return 0
    try:
        with urllib.request.urlopen(sink.url + "/metrics", timeout=3) as response:
            text = response.read().decode()
    except OSError:
        return None
    lags = [float(line.split()[-1]) for line in text.splitlines()
            if line.startswith("orderflow_sink_lag_messages{") and 'topic="book.' in line]
    return int(sum(lags)) if lags else None


def stop(child: Child, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> None:
    if child.alive():
        child.proc.send_signal(sig)
        try:
            child.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait(timeout=10)


def shutdown(settings: Settings, workers: list[Child], services: list[Child], replay: Child | None,
             down: bool) -> None:
    if replay is not None:
        stop(replay, signal.SIGTERM, timeout=10.0)
    # the fake exchange goes last: the ingest closes its WebSockets with a handshake the exchange must answer
    sources = [c for c in services if c.name == FAKE_EXCHANGE]
    children = workers + [c for c in services if c not in sources]
    for w in children:  # each checkpoints or commits what it has and leaves its group
        if w.alive():
            w.proc.send_signal(signal.SIGTERM)
    for w in children + sources:
        stop(w)
    if children or sources:
        print(f"stopped {len(workers)} worker(s)" + (f" and {', '.join(c.name for c in services)}" if services
                                                     else ""), flush=True)
    if down:
        from ops.stack import stack

        for service, outcome in stack.down(settings):
            print(f"{service}: {outcome}", flush=True)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
