"""``orderflow simulate``: publish the simulator's stream to Kafka (and/or write it to a file)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from producers.errors import ProducerError
from producers.framing import ColumnBlock, Framer
from producers.kafka_out import FrameSink, KafkaFrameSink
from producers.pacing import Pacer, parse_speed, parse_ts
from producers.simulator.generator import DEFAULT_START_NS, Malformed, SimConfig, Simulator
from producers.simulator.output import StreamWriter
from topics import settings
from topics.records import MboRecord

logger = logging.getLogger(__name__)

BATCH_RECORDS = 4096
IDLE_STEP_S = 0.05


def add_simulate(subparsers: Any) -> None:
    from producers.publish_cli import add_kafka_options

    conf = settings.load()
    p = subparsers.add_parser(
        "simulate", help="publish a simulated MBO market (many instruments) to Kafka, or write it to a file",
        description="A deterministic market simulator: clustered order arrivals, heavy-tailed sizes, mostly "
                    "cancelled orders, trades as T/F/C events, modifies, optional mid-session start, duplicates "
                    "and malformed messages. The same --seed gives the same stream.",
    )
    p.add_argument("--instruments", type=int, default=10, help="instruments to simulate (default: %(default)s)")
    p.add_argument("--rate", type=float, default=10_000.0,
                   help="mean records per simulated second, all instruments (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    p.add_argument("--duration", type=float, default=None, help="simulated seconds to generate")
    p.add_argument("--records", type=int, default=None, help="records to generate (the last event is whole)")
    p.add_argument("--start-ts", type=parse_ts, default=DEFAULT_START_NS,
                   help="simulated clock start: ISO 8601 or ns (default: 2024-01-02T14:30:00Z)")
    p.add_argument("--speed", type=parse_speed, default=1.0,
                   help="publish at this multiple of simulated time; 'max': as fast as possible (default: 1)")
    p.add_argument("--mid-session", action="store_true",
                   help="start mid-session: the initial book is never published (consumers see unknown orders)")
    p.add_argument("--dup-rate", type=float, default=0.0, help="probability that a record is sent twice")
    p.add_argument("--malformed-rate", type=float, default=0.0,
                   help="probability that an event is followed by a malformed message (raw invalid bytes)")
    p.add_argument("--out", default=None, help="also write the stream to FILE.csv (Databento MBO CSV) or .dbn[.zst]")
    p.add_argument("--no-publish", action="store_true", help="only write --out, publish nothing")
    add_kafka_options(p, conf)
    p.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    from producers.publish_cli import finish, frame_options, make_sink, on_signals

    if args.duration is None and args.records is None and args.no_publish:
        raise ProducerError("--no-publish needs --duration or --records (the stream is endless)")
    if args.no_publish and not args.out:
        raise ProducerError("--no-publish needs --out")
    try:
        config = SimConfig(
            instruments=args.instruments, rate=args.rate, seed=args.seed, start_ns=args.start_ts,
            mid_session=args.mid_session, dup_rate=args.dup_rate, malformed_rate=args.malformed_rate,
        )
    except ValueError as e:
        raise ProducerError(f"simulate: {e}") from None
    max_records, linger_s = frame_options(args)
    sim = Simulator(config)
    sink: FrameSink = NullSink() if args.no_publish else make_sink(args, "simulate")[0]
    writer = StreamWriter(args.out, sim.symbols, config.start_ns) if args.out else None
    run = SimulationRun(sim, sink, Framer(max_records, linger_s), Pacer(None if args.no_publish else args.speed),
                        writer, progress=not args.no_progress)
    started = time.monotonic()
    try:
        with on_signals(run.stop):
            try:
                run.run(args.records, args.duration)
            finally:
                left = sink.flush(args.flush_timeout)
    finally:
        if writer is not None:
            writer.close()
    summary: dict[str, Any] = {
        "command": "simulate", "events": sim.stats.events, "records": sim.stats.records,
        "duplicates": sim.stats.duplicates, "malformed": sim.stats.malformed, "by_action": sim.stats.by_action,
        "simulated_s": round(sim.t, 6), "out": args.out,
    }
    if isinstance(sink, KafkaFrameSink):
        return finish(summary, sink, left, time.monotonic() - started, None, run.stopped)
    import json

    print(json.dumps(summary), flush=True)
    return 0


class NullSink:
    """A FrameSink that discards frames (``--no-publish``)."""

    def __init__(self) -> None:
        from producers.kafka_out import DeliveryStats

        self.stats = DeliveryStats()
        self.fatal: str | None = None

    def send(self, frame: Any) -> None:
        self.stats.frames_sent += 1
        self.stats.records_sent += len(frame)

    def poll(self) -> None:
        pass

    def flush(self, timeout_s: float) -> int:
        return 0

    def queue_depth(self) -> int:
        return 0


class SimulationRun:
    """Drives the simulator: paces by the simulated clock, frames, publishes, writes the file."""

    def __init__(self, sim: Simulator, sink: FrameSink, framer: Framer, pacer: Pacer, writer: StreamWriter | None,
                 progress: bool = True) -> None:
        self.sim, self.sink, self.framer, self.pacer, self.writer = sim, sink, framer, pacer, writer
        self.progress = progress
        self.stopped = False
        self._batch: list[MboRecord] = []
        self._tick_at = time.monotonic()
        self._tick_records = 0

    def stop(self) -> None:
        self.stopped = True

    def run(self, records: int | None, duration_s: float | None) -> None:
        for item in self.sim.take(records, duration_s):
            if self.stopped:
                break
            if isinstance(item, Malformed):
                self._send_batch()  # keep the order: what came before the bad message goes first
                send_raw = getattr(self.sink, "send_raw", None)
                if send_raw is not None:
                    send_raw(item.key, item.value)
                continue
            if self.pacer.active:
                self._wait_until_due(item.records[0].ts_recv)
            if self.writer is not None:
                self.writer.write(item.records)
            self._batch.extend(item.records)
            if len(self._batch) >= BATCH_RECORDS:
                self._send_batch()
        self._send_batch()
        for frame in self.framer.flush(time.time_ns()):
            self.sink.send(frame)
        self._progress(time.monotonic(), final=True)

    def _wait_until_due(self, ts_recv: int) -> None:
        while not self.stopped:
            now = time.monotonic()
            if self.pacer.due([ts_recv], 0, now) == 1:
                return
            self._send_batch()
            wait = self.pacer.wait_s(ts_recv, now)
            deadline = self.framer.next_deadline()
            step = min(wait, IDLE_STEP_S, max(0.0, deadline - now) if deadline is not None else IDLE_STEP_S)
            time.sleep(max(step, 0.0))
            for frame in self.framer.poll(time.monotonic(), time.time_ns()):
                self.sink.send(frame)
            self.sink.poll()

    def _send_batch(self) -> None:
        now = time.monotonic()
        ts_sent = time.time_ns()
        if self._batch:
            for block in ColumnBlock.from_records(self._batch, self.sim.symbols):
                for frame in self.framer.add(block, now, ts_sent):
                    self.sink.send(frame)
            self._batch = []
        for frame in self.framer.poll(now, ts_sent):
            self.sink.send(frame)
        if now - self._tick_at >= 1.0:
            self._progress(now)

    def _progress(self, now: float, final: bool = False) -> None:
        stats = self.sink.stats
        rate = (stats.records_sent - self._tick_records) / max(1e-9, now - self._tick_at)
        self._tick_at, self._tick_records = now, stats.records_sent
        if self.progress and not final:
            print(
                f"simulate {self.sim.stats.records:>13,} records {rate:>10,.0f} rec/s  simulated "
                f"{self.sim.t:,.1f} s  delivered {stats.records_delivered:,}",
                file=sys.stderr, flush=True,
            )
