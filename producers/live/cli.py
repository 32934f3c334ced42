"""``orderflow live`` (Databento's live API -> MBO frames in Kafka) and ``orderflow fake-databento`` (docs/live.md)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from typing import Any

from producers.errors import ProducerError
from producers.kafka_out import KafkaFrameSink
from producers.live.health import HealthServer, LiveMetrics
from producers.pacing import parse_ts
from producers.publish_cli import add_kafka_options, finish, frame_options, on_signals
from topics import catalog, codec, settings
from topics.records import DeadLetter

logger = logging.getLogger(__name__)


def add_commands(subparsers: Any) -> None:
    """Register ``live`` and ``fake-databento``."""
    _add_live(subparsers)
    _add_fake(subparsers)


def _add_live(subparsers: Any) -> None:
    conf = settings.load()
    p = subparsers.add_parser(
        "live", help="subscribe to Databento's live MBO feed and publish it to Kafka as frames",
        description="Subscribe to Databento's live API (schema mbo) with the official client and publish the records "
                    "as frames, like `orderflow replay`. The API key comes from DATABENTO_API_KEY. A dropped "
                    "connection is resumed by intraday replay from the last published ts_event, without a gap or "
                    "a duplicate.",
    )
    p.add_argument("--dataset", required=True, help="Databento dataset, e.g. GLBX.MDP3")
    p.add_argument("--symbols", required=True, help="comma-separated symbols, e.g. ESH4,NQH4, or ALL_SYMBOLS")
    p.add_argument("--stype-in", default="raw_symbol",
                   help="symbology of --symbols: raw_symbol, parent, continuous, instrument_id (default: %(default)s)")
    p.add_argument("--start", type=parse_ts, default=None,
                   help="intraday replay from this ts_event (ISO 8601 or ns; within Databento's replay window)")
    p.add_argument("--gateway", default=conf.live_gateway or None,
                   help="gateway host (default: ORDERFLOW_LIVE_GATEWAY, else the dataset's own)")
    p.add_argument("--port", type=int, default=conf.live_gateway_port, help="gateway port (default: %(default)s)")
    add_kafka_options(p, conf)
    p.set_defaults(metrics_port=conf.live_metrics_port)
    p.add_argument("--max-attempts", type=int, default=10,
                   help="sessions in a row without a new record before giving up (0: never; default: %(default)s)")
    p.add_argument("--backoff-max", type=float, default=30.0, help="longest wait between reconnections, s")
    p.add_argument("--stop-after", type=int, default=None, help="stop once this many records were published")
    p.add_argument("--dead-letter-topic", default=catalog.DEAD_LETTER.name,
                   help="where invalid records go, with the reason (default: %(default)s)")
    p.set_defaults(func=run_live)


def _add_fake(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fake-databento", help="a fake Databento live gateway on loopback that streams a DBN file",
        description="Serve Databento's live protocol on 127.0.0.1 and stream the MBO records of FILE to each "
                    "session (intraday replay with start honoured), for `orderflow live --gateway 127.0.0.1` "
                    "without an API key. It accepts the key it prints.",
    )
    p.add_argument("file", help="a DBN file with MBO records (.dbn or .dbn.zst)")
    p.add_argument("--port", type=int, default=13000, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--key", default=None, help="the API key to accept (default: a fixed test key, printed)")
    p.add_argument("--drop-after", default="", help="comma-separated: cut connection k after n_k records")
    p.add_argument("--outage-records", type=int, default=1000,
                   help="records the feed moves on while a dropped client is away (default: %(default)s)")
    p.set_defaults(func=run_fake)


def run_live(args: argparse.Namespace) -> int:
    from producers.live.source import LiveOptions, LiveSource, api_key

    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if not symbols:
        raise ProducerError("--symbols: give at least one symbol (or ALL_SYMBOLS)")
    if args.max_attempts < 0 or args.backoff_max <= 0:
        raise ProducerError("--max-attempts must be 0 or more and --backoff-max positive")
    key = api_key(os.environ)
    max_records, linger_s = frame_options(args)
    options = LiveOptions(
        key=key, dataset=args.dataset, symbols=symbols, stype_in=args.stype_in, start_ns=args.start,
        gateway=args.gateway, port=args.port, max_records=max_records, linger_s=linger_s,
        backoff_max_s=args.backoff_max, max_attempts=args.max_attempts, stop_after=args.stop_after,
        progress=not args.no_progress,
    )
    conf = settings.load()
    bootstrap = args.bootstrap or conf.bootstrap_servers
    metrics = LiveMetrics(args.topic, args.dataset)
    sink = KafkaFrameSink(bootstrap, args.topic, args.compression, metrics=metrics)
    sink.require_topic()
    dead = KafkaFrameSink(bootstrap, args.dead_letter_topic, args.compression)
    source = LiveSource(options, sink, metrics, dead_letter=_dead_letter_fn(dead, args.dataset))
    server = (HealthServer(metrics, source.health, args.metrics_port, conf.bind_host).start()
              if args.metrics_port else None)
    return _run(source, sink, dead, server, args.flush_timeout)


def _run(source: Any, sink: KafkaFrameSink, dead: KafkaFrameSink, server: HealthServer | None,
         flush_timeout: float) -> int:
    from producers.live.source import LiveError

    started = time.monotonic()
    error: ProducerError | None = None
    try:
        with on_signals(source.stop):
            try:
                source.run()
            except LiveError as e:
                error = e
                logger.error("%s", e)
                print(f"orderflow live: error: {e}", file=sys.stderr, flush=True)
            finally:
                left = sink.flush(flush_timeout)
                dead_left = dead.flush(flush_timeout)
    finally:
        if server is not None:
            server.stop()
    st = source.st
    summary = {"command": "live", "records_received": st.records_received, "duplicates_dropped":
               source.resume.duplicates, "rejected": st.rejected, "dead_letters_delivered": dead.stats.raw_delivered,
               "connections": st.connections}
    code = finish(summary, sink, left, time.monotonic() - started, error, st.state == "stopping")
    if dead_left or dead.stats.frames_failed:
        logger.error("%d dead letters undelivered, %d failed: %s", dead_left, dead.stats.frames_failed,
                     dead.first_error, extra={"topic": dead.topic})
        return 1
    return code


def _dead_letter_fn(dead: KafkaFrameSink, dataset: str) -> Any:
    def send(key: bytes | None, raw: bytes, reason: str) -> None:
        record = DeadLetter(topic=f"databento:{dataset}", partition=-1, offset=-1, key=key, value=raw,
                            reason=reason, stage="live", ts_recv=time.time_ns())
        dead.send_raw(key, codec.encode(record))

    return send


def run_fake(args: argparse.Namespace) -> int:
    from producers.live.fake_gateway import DEFAULT_KEY, FakeGateway, Feed, GatewayOptions

    try:
        drops = [int(n) for n in args.drop_after.split(",") if n.strip()]
    except ValueError:
        raise ProducerError(f"--drop-after {args.drop_after!r}: expected comma-separated record counts") from None
    feed = Feed.load(args.file)
    key = args.key or DEFAULT_KEY
    options = GatewayOptions(key=key, drop_after=drops, outage_records=args.outage_records)
    stopped = threading.Event()
    with FakeGateway(feed, options, port=args.port) as gateway, on_signals(stopped.set):
        print(f"fake Databento gateway on 127.0.0.1:{gateway.port}: dataset {feed.dataset}, {len(feed.records):,} "
              f"records, symbols {','.join(sorted(feed.symbols))}\n  DATABENTO_API_KEY={key} orderflow live "
              f"--gateway 127.0.0.1 --port {gateway.port} --dataset {feed.dataset} --symbols "
              f"{','.join(sorted(feed.symbols))}", file=sys.stderr, flush=True)
        while not stopped.wait(1.0):
            pass
    return 0
