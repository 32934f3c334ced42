"""``orderflow ingest`` and ``orderflow fake-exchange``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from producers.exchanges import VENUES, venue_class
from producers.exchanges.errors import ExchangeError
from producers.exchanges.fake import MISBEHAVIOURS, FakeConfig, FakeExchange
from producers.exchanges.ingest import IngestConfig, run_ingest, summary
from producers.exchanges.processes import process_configs, run_processes
from producers.exchanges.replay import load
from topics import settings

logger = logging.getLogger(__name__)


def add_commands(subparsers: Any) -> None:
    conf = settings.load()
    _add_ingest(subparsers, conf)
    _add_fake(subparsers, conf)


def _add_ingest(subparsers: Any, conf: settings.Settings) -> None:
    p = subparsers.add_parser(
        "ingest", help="publish crypto-exchange trades, quotes and L2 books to Kafka",
        description="Connect to venues' WebSockets, check their book sequence/checksum rules, publish normalized "
        "ticks to ticks.trades, ticks.quotes and ticks.book keyed venue:symbol.",
    )
    p.add_argument("--venues", required=True,
                   help=f"comma-separated, from: {', '.join(VENUES)} (VENUE#N: one more connection to VENUE)")
    p.add_argument("--symbols", action="append", default=[], metavar="[VENUE=]SYM,SYM",
                   help="symbols for every venue, or for one venue with VENUE=; repeatable (default: each venue's)")
    p.add_argument("--endpoint-override", action="append", default=[], metavar="VENUE=ws://127.0.0.1:PORT",
                   help="connect VENUE here (its REST snapshots from the same host:port); repeatable")
    p.add_argument("--live", action="store_true", help="use the venues' public endpoints where not overridden")
    p.add_argument("--bootstrap", default=conf.bootstrap_servers, help="Kafka bootstrap servers")
    p.add_argument("--metrics-port", type=int, default=conf.exchange_metrics_port, help="/metrics and /health (0: off)")
    p.add_argument("--queue-size", type=int, default=conf.exchange_queue_max)
    p.add_argument("--queue-policy", choices=("drop-oldest", "drop-newest"), default=conf.exchange_queue_policy)
    p.add_argument("--watchdog", type=float, default=conf.exchange_watchdog_s, help="seconds of silence to reconnect")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: run until killed)")
    p.add_argument("--processes", type=int, default=1,
                   help="deal the venues among this many ingest processes (each its own event loop, Kafka producer "
                   "and metrics port: --metrics-port plus its index)")
    p.set_defaults(func=cmd_ingest)


def _add_fake(subparsers: Any, conf: settings.Settings) -> None:
    p = subparsers.add_parser(
        "fake-exchange", help="serve a venue's recorded frames over a WebSocket on 127.0.0.1",
        description="Replay a recorded capture to WebSocket clients (answering their subscription), serve its REST "
        "depth snapshots, and misbehave on request.",
    )
    p.add_argument("--venue", required=True, choices=sorted(VENUES))
    p.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0: any free port)")
    p.add_argument("--speed", type=float, default=1.0, help="recorded pace multiplier; 0 = as fast as possible")
    p.add_argument("--rate", type=float, default=0.0,
                   help="frames per second, evenly (a steady load instead of the recorded pace)")
    p.add_argument("--misbehave", nargs="+", default=[], choices=MISBEHAVIOURS, metavar="MODE",
                   help=f"one or more of {', '.join(MISBEHAVIOURS)}")
    p.add_argument("--misbehave-after", type=int, default=200, help="frames sent before misbehaving")
    p.add_argument("--repeat", action="store_true", help="misbehave on every connection, not only once")
    p.add_argument("--capture", type=int, default=0, help="which capture group of the venue to serve")
    p.add_argument("--data", type=Path, default=conf.exchange_data, help="folder of the recorded captures")
    p.set_defaults(func=cmd_fake_exchange)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ExchangeError(f"{what}: expected VENUE=VALUE, got {item!r}")
        venue_class(name.partition("#")[0])
        out[name] = value
    return out


def _symbols(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        venue, text = (name, rest) if sep else ("*", item)
        if venue != "*":
            venue_class(venue.partition("#")[0])
        out.setdefault(venue, []).extend(s for s in text.split(",") if s)
    return out


def cmd_ingest(args: argparse.Namespace) -> int:
    venues = [v for v in args.venues.split(",") if v]
    for v in venues:
        venue_class(v.partition("#")[0])
    conf = settings.load()
    config = IngestConfig(
        venues=venues, bootstrap=args.bootstrap, symbols=_symbols(args.symbols),
        endpoints=_pairs(args.endpoint_override, "--endpoint-override"), live=args.live,
        queue_max=args.queue_size, queue_policy=args.queue_policy, watchdog_s=args.watchdog,
        metrics_port=args.metrics_port, duration_s=args.duration, bind_host=conf.bind_host,
        kafka={"linger.ms": conf.exchange_linger_ms},
    )
    if args.processes != 1:
        configs = process_configs(config, args.processes)
        level = logging.getLevelName(logging.getLogger().level)
        fmt = args.log_format or ("text" if sys.stderr.isatty() else conf.log_format)  # as streams.cli.main
        print(json.dumps(run_processes(configs, level, fmt), default=str))
        return 0
    print(json.dumps(summary(run_ingest(config)), default=str))
    return 0


def cmd_fake_exchange(args: argparse.Namespace) -> int:
    cls = venue_class(args.venue)
    if not 0 <= args.capture < len(cls.captures):
        raise ExchangeError(f"{args.venue} has capture groups 0..{len(cls.captures) - 1}, not {args.capture}")
    frames = load(cls, args.data, args.capture)
    config = FakeConfig(speed=args.speed, rate=args.rate, misbehave=args.misbehave, after=args.misbehave_after,
                        repeat=args.repeat)
    fake = FakeExchange(cls, frames, config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        port = await fake.start(args.port)
        print(f"fake {args.venue} exchange: ws://127.0.0.1:{port}/ws ({len(fake.frames)} frames)", flush=True)
        await stop.wait()
        await fake.stop()

    asyncio.run(main())
    return 0
