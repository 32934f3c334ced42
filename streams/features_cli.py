"""``orderflow features``: one Faust features worker (BBO, MBP-10, trades and exchange ticks -> feature bars and
regime signals). On SIGINT/SIGTERM it checkpoints every group before Faust commits and leaves the group."""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from streams.config import freeze_heap, prepare_process
from topics import settings as topic_settings

logger = logging.getLogger(__name__)

FLOOR_TIMEOUT_S = 15.0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "features", help="run a Faust features worker (book and tick topics -> feature bars, regime signals)",
        description="Consume book.bbo, book.mbp10, book.trades, ticks.trades and ticks.quotes, compute the feature "
        "bars of every instrument (ORDERFLOW_FEATURES_INTERVALS_MS) and their regimes, publish them to "
        "features.bars and signals.regime; checkpoint the state into a RocksDB table at commit.",
        epilog="Views: /features, /features/{instrument}, /regimes, /health, /metrics. "
        "Settings: ORDERFLOW_FEATURES_*. See docs/features-worker.md.",
    )
    cmd.add_argument("--web-port", type=int, help="port of the web views (default ORDERFLOW_FEATURES_WEB_PORT)")
    cmd.add_argument("--workdir", type=Path, help="RocksDB/Faust data folder (default <home>/streams/<app>-<port>)")
    cmd.add_argument("--app-id", help="Faust app id / consumer group (default ORDERFLOW_FEATURES_APP_ID)")
    cmd.add_argument("--topic-prefix", default="", help="prefix of every topic read and written (isolated runs)")
    cmd.set_defaults(func=_features)


def _features(args: argparse.Namespace) -> int:
    from streams.features_app import FeaturesConfig
    from streams.worker import topic_partitions

    conf = topic_settings.load()
    config = FeaturesConfig.from_settings(conf, web_port=args.web_port, workdir=args.workdir, app_id=args.app_id,
                                          topic_prefix=args.topic_prefix)
    counts = {t: topic_partitions(config.bootstrap, t) for t in config.topics.inputs()}
    if len(set(counts.values())) != 1:
        from streams.errors import StreamsError

        raise StreamsError(f"the input topics must have one partition count (they are read by partition group): "
                           f"{counts}")
    config = replace(config, partitions=next(iter(counts.values())))
    return run(config, conf.log_level)


def floor_reader(bootstrap: str) -> Any:
    """First offsets (log start) of input partitions, read by a consumer that never joins a group."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "orderflow-features-floors",
                         "enable.auto.commit": False})

    def read(tps: list[Any]) -> dict[Any, int]:
        out = {}
        for tp in tps:
            try:
                low, _high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                            timeout=FLOOR_TIMEOUT_S)
            except Exception:
                logger.warning("first offset of %s[%d] not readable", tp.topic, tp.partition, exc_info=True)
                continue
            out[tp] = int(low)
        return out

    async def floors(tps: list[Any]) -> dict[Any, int]:
        return await asyncio.get_running_loop().run_in_executor(None, read, tps)

    return floors


def run(config: Any, loglevel: str = "INFO") -> int:
    import faust

    from streams.features_app import create_app
    from streams.features_web import NS
    from streams.gcwatch import GcPauses

    prepare_process(config)
    app, runtime = create_app(config)
    runtime.on_ready = freeze_heap
    GcPauses(runtime.metrics.registry, NS)
    runtime.read_floors = floor_reader(config.bootstrap)

    class FeaturesWorker(faust.Worker):
        async def on_stop(self) -> None:
            if runtime.fatal is None and runtime.ready:
                try:
                    await asyncio.wait_for(runtime.checkpoint_all(), timeout=30.0)
                except Exception:
                    logger.exception("last checkpoint failed; the next owner replays from the previous one")
            await runtime.sink.close()
            await super().on_stop()

    logger.info("features worker %s: inputs %s (%d partitions), views on http://127.0.0.1:%d/features, data in %s",
                config.app_id, ", ".join(config.topics.inputs()), config.partitions, config.web_port, config.workdir)
    worker = FeaturesWorker(app, loglevel=loglevel, override_logging=False, redirect_stdouts=False, quiet=True,
                            workdir=str(config.workdir))
    if not worker.stdout.isatty():
        worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        return 1 if runtime.fatal is not None else code
    return 1 if runtime.fatal is not None else 0
