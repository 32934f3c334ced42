"""``orderflow worker`` (one Faust book worker) and ``orderflow run`` (the whole pipeline on the sample day)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from topics import settings as topic_settings


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    worker = subparsers.add_parser(
        "worker", help="run a Faust book worker (MBO frames -> books -> BBO, MBP-10, trades, anomalies)",
        description="Consume MBO frames, keep one L3 book per instrument, publish BBO updates, MBP-10 snapshots, "
        "trades and anomalies; checkpoint books into a RocksDB table. Start several in one consumer group "
        "(each with its own --web-port and --workdir) to split the partitions.",
        epilog="Views: /books, /books/{instrument}?depth=N, /health, /metrics. Settings: ORDERFLOW_STREAMS_*.",
    )
    worker.add_argument("--web-port", type=int, help="port of the web views (default ORDERFLOW_STREAMS_WEB_PORT)")
    worker.add_argument("--workdir", type=Path, help="RocksDB/Faust data folder of this worker "
                        "(default <home>/streams/<app id>-<web port>)")
    worker.add_argument("--app-id", help="Faust app id / consumer group (default ORDERFLOW_STREAMS_APP_ID)")
    worker.add_argument("--topic-prefix", default="", help="prefix of every topic read and written (isolated runs)")
    worker.add_argument("--publisher", choices=("confluent", "faust"), help="output producer")
    worker.set_defaults(func=_worker)

    run = subparsers.add_parser(
        "run", help="the whole pipeline: stack up, workers, replay the sample day, show where to look",
        description="Start the local stack (if needed), N book workers, replay the ESH4 sample session into "
        "mbo.frames, and print the web views, topics and a console-consumer command. Ctrl-C stops the workers "
        "and the replay (the stack keeps running unless --down).",
    )
    run.add_argument("--workers", type=int, default=1, help="book worker processes (default 1)")
    run.add_argument("--file", type=Path, help="DBN file to replay (default: the ESH4 sample session)")
    run.add_argument("--speed", help="replay pace: a multiple of the recorded pace, or 'max' (default: max)")
    run.add_argument("--down", action="store_true", help="also stop the stack on exit")
    run.add_argument("--no-wait", action="store_true",
                     help="exit once the replay is done, the workers caught up and the sink stored the book outputs")
    run.add_argument("--no-sink", action="store_true", help="do not store the outputs in PostgreSQL")
    run.add_argument("--no-features", action="store_true", help="do not run the features worker")
    run.add_argument("--exchange", default="binance",
                     help="venue whose recorded capture a fake exchange serves to `orderflow ingest` "
                          "(default binance; 'none': no tick ingest)")
    run.set_defaults(func=_run)


def _worker(args: argparse.Namespace) -> int:
    from streams import worker
    from streams.config import WorkerConfig

    conf = topic_settings.load()
    config = WorkerConfig.from_settings(conf, web_port=args.web_port, workdir=args.workdir, app_id=args.app_id,
                                        topic_prefix=args.topic_prefix)
    if args.publisher:
        config = replace(config, publisher=args.publisher)
    config = replace(config, partitions=worker.topic_partitions(config.bootstrap, config.topics.frames))
    return worker.run(config, conf.log_level)


def _run(args: argparse.Namespace) -> int:
    from streams import pipeline

    return pipeline.main(args)
