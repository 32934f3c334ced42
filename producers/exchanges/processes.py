"""``orderflow ingest --processes N``: the venues dealt among N ingest processes.

Each process runs a whole :class:`~producers.exchanges.ingest.Ingest` (its connections, queue, event loop and Kafka
producer) for its share of the venues, with ``/metrics`` and ``/health`` on its own port (the base port plus its
index). One event loop that is busy most of the time turns every pause the machine gives it into a long backlog;
several loops, each busy a fraction of the time, catch up at once (docs/benchmarks.md, exchange ingest). Records
of one ``venue:symbol`` come from one connection, so from one process: per-key order is kept as with one process.

The parent starts the processes, forwards SIGINT and SIGTERM to them, and waits. A process that exits with an
error stops the others: the command fails, naming the venues of the process that failed.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import signal
import time
from collections.abc import Sequence
from typing import Any

from producers.exchanges import venue_class
from producers.exchanges.errors import ExchangeError
from producers.exchanges.ingest import IngestConfig, endpoints_for, run_ingest, summary
from topics import logs

logger = logging.getLogger(__name__)
STOP_WAIT_S = 60.0  # how long a stopping process may take to drain its queue into Kafka


def split_venues(venues: Sequence[str], processes: int) -> list[list[str]]:
    """``venues`` dealt round-robin into at most ``processes`` non-empty groups, in order within each."""
    if processes < 1:
        raise ExchangeError(f"--processes must be at least 1, not {processes}")
    n = min(processes, len(venues))
    return [list(venues[i::n]) for i in range(n)]


def process_configs(config: IngestConfig, processes: int) -> list[IngestConfig]:
    """One config per process: its venues, and its metrics port (the base port plus its index; 0 stays off).

    Every venue's endpoint is resolved here first, so that a bad one fails before any process starts."""
    for name in config.venues:
        endpoints_for(venue_class(name.partition("#")[0]), config.endpoints.get(name), config.live)
    groups = split_venues(config.venues, processes)
    return [dataclasses.replace(config, venues=group, metrics_port=config.metrics_port + i if config.metrics_port
                                else 0) for i, group in enumerate(groups)]


def _child(config: IngestConfig, level: str, fmt: str, results: Any) -> None:
    logs.configure(level, fmt)
    results.put(summary(run_ingest(config)))


def run_processes(configs: Sequence[IngestConfig], level: str = "INFO", fmt: str = "json") -> dict[str, Any]:
    """Run one ingest process per config until they stop; their summaries merged. Raises :class:`ExchangeError`
    when a process failed (the others are stopped first)."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(cfg, level, fmt, results), name=f"orderflow-ingest-{i}")
             for i, cfg in enumerate(configs)]
    forward = _Forwarder(procs)
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i, (proc, cfg) in enumerate(zip(procs, configs, strict=True)):
            proc.start()
            logger.info("ingest process %d (pid %s): %s%s", i, proc.pid, ", ".join(cfg.venues),
                        f", metrics on port {cfg.metrics_port}" if cfg.metrics_port else "")
        failed = _wait(procs, forward)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summaries = [results.get(timeout=5) for _ in range(len(procs) - len(failed))]
    if failed:
        detail = "; ".join(f"process {i} ({', '.join(configs[i].venues)}) exited with {code}" for i, code in failed)
        raise ExchangeError(f"an ingest process failed: {detail}")
    merged: dict[str, Any] = {"venues": {}, "queue_dropped": 0}
    for s in summaries:
        merged["venues"].update(s["venues"])
        merged["queue_dropped"] += s["queue_dropped"]
    return merged


class _Forwarder:
    """A signal handler that asks every process to stop (SIGTERM), once."""

    def __init__(self, procs: Sequence[Any]) -> None:
        self.procs = procs
        self.stopping = False

    def __call__(self, signum: int = signal.SIGTERM, frame: Any = None) -> None:
        if self.stopping:
            return
        self.stopping = True
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: the process drains its queue into Kafka and exits


def _wait(procs: Sequence[Any], forward: _Forwarder) -> list[tuple[int, int]]:
    """Wait for every process; a failure stops the others. Returns (index, exit code) of the failed ones."""
    failed: list[tuple[int, int]] = []
    deadline: float | None = None
    while any(p.is_alive() for p in procs):
        for i, p in enumerate(procs):
            if _failed(p, forward) and (i, p.exitcode) not in failed:
                failed.append((i, p.exitcode))
                logger.error("ingest process %d (pid %s) exited with %s: stopping the others", i, p.pid, p.exitcode)
                forward()
        if forward.stopping and deadline is None:
            deadline = time.monotonic() + STOP_WAIT_S
        if deadline is not None and time.monotonic() > deadline:
            for p in procs:
                if p.is_alive():
                    logger.error("ingest process %s did not stop in %.0f s: killed", p.pid, STOP_WAIT_S)
                    p.kill()
        time.sleep(0.1)
    failed += [(i, p.exitcode) for i, p in enumerate(procs) if _failed(p, forward) and (i, p.exitcode) not in failed]
    return failed


def _failed(proc: Any, forward: _Forwarder) -> bool:
    """The process exited with an error (a stop this command asked for, answered by the signal, is none)."""
    code = proc.exitcode
    if code is None or code == 0:
        return False
    return not (forward.stopping and code in (-signal.SIGTERM, -signal.SIGINT))
