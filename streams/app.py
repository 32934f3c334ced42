"""The Faust app of a book worker: the frames topic, the checkpoint table, the agent, two timers, the views.

``create_app(config)`` builds everything without starting it; :mod:`streams.worker` runs it. Several workers
share one app id (consumer group): Kafka splits the frames topic's partitions between them, and the checkpoint
table's changelog (one partition per frames partition) lets a partition's books move with it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, cast

import faust

from streams import stream_web, web
from streams.config import FaustWorkerConfig, WorkerConfig
from streams.keeper import Keeper, KeeperConfig
from streams.metrics import Metrics
from streams.output import ConfluentSink, FaustSink, OutputSink
from streams.recovery_watch import RecoveryWatchdog
from streams.runtime import Runtime, TableStore
from streams.sse import Hub, LiveConfig, TeeSink, register_metrics
from streams.transport import BookApp
from topics import settings

logger = logging.getLogger(__name__)

TABLE = "book-checkpoints"
MAX_BYTES = 16 * 1024 * 1024  # a checkpoint of a deep book is a few MB at most; the broker takes 16 MB
CHANGELOG_CONFIG = {
    "max.message.bytes": str(MAX_BYTES),
    "segment.ms": str(10 * 60 * 1000),  # roll segments so that compaction keeps recovery short
    "min.cleanable.dirty.ratio": "0.1",
}


def worker_settings(config: FaustWorkerConfig) -> dict[str, Any]:
    """Faust settings shared by the book and features workers (docs/streams.md says why each differs from Faust's
    default); each worker adds its own buffer size and standby replicas."""
    session = config.session_timeout_s
    return {
        "broker": config.broker_url,
        "datadir": str(config.workdir),
        "store": "rocksdb://",
        "autodiscover": False,
        "web_port": config.web_port,
        "web_bind": config.bind_host,
        "web_host": "127.0.0.1",
        "topic_partitions": config.partitions,
        "topic_replication_factor": 1,
        "broker_commit_interval": config.commit_interval_s,
        "broker_session_timeout": session,
        "broker_heartbeat_interval": max(0.3, session / 10),
        "broker_rebalance_timeout": max(session, 30.0),
        "consumer_auto_offset_reset": "earliest",
        "stream_wait_empty": False,  # records wait for their checkpoint to be acked; never wait for that at rebalance
        "producer_max_request_size": MAX_BYTES + 65_536,
        "producer_linger": 0.001,
        "web_in_thread": False,
    }


def faust_settings(config: WorkerConfig) -> dict[str, Any]:
    """The Faust app settings of a book worker."""
    return {
        **worker_settings(config),
        "stream_buffer_maxsize": 256,  # frames of up to hundreds of records each
        "table_standby_replicas": config.standby_replicas,
    }


def prepare_app(config: FaustWorkerConfig, faust_settings: dict[str, Any], batch_topics: Iterable[str]) -> BookApp:
    """The app of a worker, its data folder made, its consumer set up as both workers need: the fetch wait, and
    ``batch_topics`` delivered in batches (:mod:`streams.batching`)."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    app = BookApp(config.app_id, **faust_settings)
    app.fetch_wait_ms = config.fetch_wait_ms
    app.intake_fetch = (config.intake_wait_ms, config.intake_min_bytes)
    app.batch_topics, app.batch_max = frozenset(batch_topics), config.batch_max
    app.intake, app.bootstrap = config.intake, config.bootstrap
    return app


def output_sink(config: FaustWorkerConfig, app: faust.App, framed: frozenset[str] = frozenset()) -> OutputSink:
    """Where a worker's outputs go: librdkafka (default) or Faust's own producer; ``framed`` topics' outputs leave
    as frames (:func:`streams.output.frame_outputs`)."""
    if config.publisher == "confluent":
        return ConfluentSink(config.bootstrap, f"{config.app_id}-{config.web_port}", config.output_linger_ms,
                             framed=framed)
    return FaustSink(app, framed)


def create_app(config: WorkerConfig, live: LiveConfig | None = None) -> tuple[faust.App, Runtime]:
    app = prepare_app(config, faust_settings(config), batch_topics=[config.topics.frames])
    raw: faust.Schema = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    frames = app.topic(config.topics.frames, schema=raw, partitions=config.partitions)
    # not schema=: the table would set its (JSON) serializers on the shared schema; bytes types give raw ones
    table = app.Table(TABLE, partitions=config.partitions, key_type=bytes, value_type=bytes,
                      extra_topic_configs=CHANGELOG_CONFIG)
    keeper = Keeper(KeeperConfig(topics=config.topics, crossed_policy=config.crossed_policy,
                                 gap_threshold=config.gap_threshold, mbp10_interval_s=config.mbp10_interval_s,
                                 worker=config.worker_name))
    sink = output_sink(config, app, config.topics.framed())
    live = live or LiveConfig.from_settings(settings.load())
    hub = Hub(config.topics, stream_web.book_snapshot(keeper), live)  # the live view gets every output too
    runtime = Runtime(app, config, keeper, TableStore(table), TeeSink(sink, hub), Metrics())
    register_metrics(hub, runtime.metrics.registry)
    app.recovery_watchdog = RecoveryWatchdog(app, runtime.metrics.registry, "orderflow_book", config.recovery_stall_s)

    @app.agent(frames, concurrency=1, name="books")
    async def books(stream: Any) -> None:
        await runtime.consume(stream)

    app.timer(config.commit_interval_s / 2, name="checkpoint-idle")(runtime.checkpoint_due)
    app.timer(max(0.05, config.mbp10_interval_s / 4), name="mbp10-flush")(runtime.flush_mbp10)
    # mode's Signal.connect is typed for plain functions; bound async methods work the same at run time
    app.on_partitions_revoked.connect(cast(Any, runtime.on_revoked))
    app.on_partitions_assigned.connect(cast(Any, runtime.on_assigned))
    app.on_rebalance_complete.connect(cast(Any, runtime.on_rebalance_complete))
    web.register(app, runtime)
    stream_web.register(cast(Any, app.web).web_app, hub, live.control_url)  # the aiohttp driver's application
    return app, runtime
