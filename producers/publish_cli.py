"""``orderflow replay`` and ``orderflow simulate``: publish MBO frames to Kafka (see docs/producers.md)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from producers.control import ControlServer, PlaybackControl
from producers.errors import ProducerError
from producers.kafka_out import COMPRESSIONS, DeliveryStats, KafkaFrameSink
from producers.metrics import ProducerMetrics
from producers.pacing import parse_speed, parse_ts
from producers.replay import Replay, ReplayOptions
from producers.replay_source import InvalidRecordError
from topics import catalog, settings

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 60.0


def add_commands(subparsers: Any) -> None:
    """Register ``replay`` and ``simulate``."""
    _add_replay(subparsers)
    try:
        from producers.simulator.cli import add_simulate
    except ModuleNotFoundError:
        return
    add_simulate(subparsers)


def add_kafka_options(p: argparse.ArgumentParser, conf: settings.Settings) -> None:
    """Options shared by the publishing commands."""
    p.add_argument("--topic", default=catalog.MBO_FRAMES.name, help="topic to publish to (default: %(default)s)")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default: ORDERFLOW_KAFKA_BOOTSTRAP)")
    p.add_argument(
        "--compression", choices=COMPRESSIONS, default=conf.producer_compression,
        help="Kafka batch compression (default: %(default)s)",
    )
    p.add_argument("--max-records", type=int, default=None,
                   help="records per frame at most, unless one event is longer (default: ORDERFLOW_FRAME_MAX_RECORDS)")
    p.add_argument("--linger-ms", type=float, default=None,
                   help="how long complete events may wait for a fuller frame (default: ORDERFLOW_FRAME_LINGER_MS)")
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr every second")
    p.add_argument("--flush-timeout", type=float, default=FLUSH_TIMEOUT_S,
                   help="seconds to wait for delivery reports at the end (default: %(default)s)")


def _add_replay(subparsers: Any) -> None:
    conf = settings.load()
    p = subparsers.add_parser(
        "replay", help="replay DBN/CSV MBO files to Kafka as frames, with pacing and playback control",
        description="Publish the MBO records of FILE... (in order) to Kafka as frames of one instrument, never "
                    "splitting an F_LAST event. As fast as possible by default, or at the recorded pace x --speed.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help=".dbn, .dbn.zst or Databento MBO .csv files")
    add_kafka_options(p, conf)
    p.add_argument("--speed", type=parse_speed, default=None,
                   help="multiple of the recorded pace (ts_recv); 'max' or absent: as fast as possible")
    p.add_argument("--start", type=parse_ts, default=None, help="first ts_recv to send: ISO 8601 or ns")
    p.add_argument("--end", type=parse_ts, default=None, help="last ts_recv to send: ISO 8601 or ns")
    p.add_argument("--loop", type=int, default=1, help="replay the files this many times (0: forever)")
    p.add_argument("--control-port", type=int, default=conf.replay_control_port,
                   help="HTTP playback control on 127.0.0.1 (0: any free port; default: %(default)s)")
    p.add_argument("--no-control", action="store_true", help="no HTTP playback control")
    p.add_argument("--skip-invalid", action="store_true",
                   help="drop records that do not validate (reported) instead of stopping at the first")
    p.set_defaults(func=run_replay)


def frame_options(args: argparse.Namespace) -> tuple[int, float]:
    """(max records per frame, linger seconds) from the options, falling back to the settings."""
    conf = settings.load()
    max_records = args.max_records if args.max_records is not None else conf.frame_max_records
    linger_ms = args.linger_ms if args.linger_ms is not None else conf.frame_linger_ms
    if max_records < 1 or linger_ms < 0:
        raise ProducerError("--max-records must be at least 1 and --linger-ms not negative")
    return max_records, linger_ms / 1000.0


def make_sink(args: argparse.Namespace, source: str) -> tuple[KafkaFrameSink, ProducerMetrics]:
    """The Kafka sink (topic checked to exist) and the metrics, served when --metrics-port is given."""
    conf = settings.load()
    bootstrap = args.bootstrap or conf.bootstrap_servers
    metrics = ProducerMetrics(source, args.topic)
    if args.metrics_port is not None:
        metrics.serve(args.metrics_port, conf.bind_host)
    sink = KafkaFrameSink(bootstrap, args.topic, args.compression, metrics=metrics)
    sink.require_topic()
    return sink, metrics


def run_replay(args: argparse.Namespace) -> int:
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        raise ProducerError(f"no such file: {', '.join(missing)}")
    if args.loop < 0:
        raise ProducerError("--loop must be 0 (forever) or more")
    max_records, linger_s = frame_options(args)
    options = ReplayOptions(
        files=list(args.files), speed=args.speed, start_ns=args.start, end_ns=args.end, loops=args.loop,
        max_records=max_records, linger_s=linger_s, skip_invalid=args.skip_invalid, progress=not args.no_progress,
    )
    sink, metrics = make_sink(args, "replay")
    control = PlaybackControl(args.speed)
    replay = Replay(options, sink, control, metrics)
    server = None
    if not args.no_control:
        server = ControlServer(control, replay.status, args.control_port, settings.load().bind_host).start()
        print(f"playback control: {server.url}/status", file=sys.stderr, flush=True)
    started = time.monotonic()
    error: ProducerError | None = None
    try:
        with on_signals(replay.stop):
            try:
                replay.run()
            except InvalidRecordError as e:
                error = e
                logger.error("refusing to publish: %s", e, extra={"file": e.path, "row": e.row})
            finally:
                left = sink.flush(args.flush_timeout)
    finally:
        if server is not None:
            server.stop()
    summary = {"command": "replay", "records_read": replay.st.records_read, "rejected": replay.st.rejected}
    return finish(summary, sink, left, time.monotonic() - started, error, replay.st.state == "stopping")


def finish(
    summary: dict[str, Any], sink: KafkaFrameSink, left: int, elapsed: float, error: ProducerError | None,
    stopped: bool,
) -> int:
    """Print the final counts (JSON on stdout, a sentence on stderr) and return the exit code."""
    stats: DeliveryStats = sink.stats
    summary.update(stats.as_dict())
    summary.update({
        "delivery_failures": stats.frames_failed, "undelivered": left, "stopped": stopped,
        "elapsed_s": round(elapsed, 3), "records_per_s": round(stats.records_sent / elapsed if elapsed else 0.0),
    })
    print(json.dumps(summary), flush=True)
    print(
        f"{summary['command']}: {stats.records_delivered:,} of {stats.records_sent:,} records delivered in "
        f"{stats.frames_delivered:,} frames, {stats.frames_failed} failed, {left} undelivered"
        + (", stopped by signal" if stopped else ""),
        file=sys.stderr, flush=True,
    )
    if error is not None:
        return 1
    if left:
        logger.error("%d messages still undelivered after %.0f s", left, FLUSH_TIMEOUT_S, extra={"topic": sink.topic})
        return 1
    try:
        sink.check()
    except ProducerError as e:
        logger.error("%s", e, extra={"topic": sink.topic})
        return 1
    return 0


@contextmanager
def on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT/SIGTERM call ``stop`` (stop reading, flush, report); a second signal aborts at once."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt
        logger.info("%s: stopping, flushing what was accepted", signal.Signals(signum).name)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
