"""The Faust app of a features worker: the input topics, the checkpoint table, the agent, the timers, the views.

A separate app id (consumer group) from the book workers. Partition ``p`` of every input topic forms one group
(Faust assigns co-partitioned topics together), checkpointed under ``group/<p>`` in a RocksDB table whose
changelog has one partition per group.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import faust

from processors.features import FeatureConfig
from processors.regime import RegimeConfig
from streams import features_stream
from streams.app import CHANGELOG_CONFIG, worker_settings
from streams.features_group import FeatureTopics, GroupKeeper
from streams.features_runtime import FeaturesRuntime, TableGroupStore
from streams.features_stream import BarSignal
from streams.features_web import FeatureMetrics, register
from streams.output import ConfluentSink, FaustSink, OutputSink
from streams.recovery_watch import RecoveryWatchdog
from streams.transport import BookApp
from topics import catalog
from topics.settings import Settings

logger = logging.getLogger(__name__)

TABLE = "feature-checkpoints"


@dataclass(frozen=True)
class FeaturesConfig:
    app_id: str
    bootstrap: str
    web_port: int
    workdir: Path
    partitions: int  # of every input topic, and of the checkpoint table's changelog
    intervals_ns: tuple[int, ...] = (1_000_000_000, 60_000_000_000)
    commit_interval_s: float = 1.0
    idle_s: float = 0.25
    regime_fit_bars: int = 600
    publisher: str = "confluent"
    session_timeout_s: float = 10.0
    loop: str = "uvloop"
    fetch_wait_ms: int = 10
    recovery_stall_s: float = 20.0  # see streams.recovery_watch
    batch_max: int = 500  # see streams.batching
    bind_host: str = "127.0.0.1"  # the web server listens here
    topics: FeatureTopics = field(default_factory=FeatureTopics)
    heartbeat_s: float = 15.0  # SSE comment line to an idle /stream/features client

    @property
    def worker_name(self) -> str:
        return f"{socket.gethostname()}:{self.web_port}"

    @classmethod
    def from_settings(cls, settings: Settings, *, web_port: int | None = None, workdir: Path | None = None,
                      app_id: str | None = None, topic_prefix: str = "") -> FeaturesConfig:
        port = web_port if web_port is not None else settings.features_web_port
        app = app_id or settings.features_app_id
        if workdir is None:
            workdir = (Path(settings.features_workdir) if settings.features_workdir
                       else Path(settings.home) / "streams" / f"{app}-{port}")
        return cls(
            app_id=app, bootstrap=settings.bootstrap_servers, web_port=port, workdir=workdir,
            partitions=settings.topic_partitions or catalog.BOOK_BBO.partitions,
            intervals_ns=settings.feature_intervals_ns(),
            commit_interval_s=settings.features_commit_interval_ms / 1000, idle_s=settings.features_idle_ms / 1000,
            regime_fit_bars=settings.features_regime_fit_bars, publisher=settings.streams_publisher,
            session_timeout_s=settings.streams_session_timeout_ms / 1000, loop=settings.streams_loop,
            fetch_wait_ms=settings.streams_fetch_wait_ms, recovery_stall_s=settings.streams_recovery_stall_ms / 1000,
            batch_max=settings.streams_batch_max, bind_host=settings.bind_host,
            topics=FeatureTopics.with_prefix(topic_prefix),
            heartbeat_s=settings.streams_sse_heartbeat_ms / 1000,
        )


def faust_settings(config: FeaturesConfig) -> dict[str, Any]:
    return {
        **worker_settings(config.bootstrap, config.workdir, config.web_port, config.partitions,
                          config.commit_interval_s, config.session_timeout_s, config.bind_host),
        "stream_buffer_maxsize": 4096,
        "table_standby_replicas": 0,
    }


def keeper_for(config: FeaturesConfig) -> GroupKeeper:
    features = FeatureConfig(intervals_ns=config.intervals_ns)
    regime = RegimeConfig(fit_bars=config.regime_fit_bars)
    return GroupKeeper(config.topics, features, regime)


def create_app(config: FeaturesConfig) -> tuple[faust.App, FeaturesRuntime]:
    config.workdir.mkdir(parents=True, exist_ok=True)
    app = BookApp(config.app_id, **faust_settings(config))
    app.fetch_wait_ms = config.fetch_wait_ms
    raw: faust.Schema = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    keeper = keeper_for(config)
    inputs = app.topic(*keeper.types, schema=raw, partitions=config.partitions)
    app.batch_topics, app.batch_max = frozenset(keeper.types), config.batch_max
    table = app.Table(TABLE, partitions=config.partitions, key_type=bytes, value_type=bytes,
                      extra_topic_configs=CHANGELOG_CONFIG)
    sink: OutputSink = (ConfluentSink(config.bootstrap, f"{config.app_id}-{config.web_port}")
                        if config.publisher == "confluent" else FaustSink(app))
    runtime = FeaturesRuntime(app, keeper, TableGroupStore(table), sink, FeatureMetrics(),
                              config.commit_interval_s, config.idle_s, config.worker_name)
    app.recovery_watchdog = RecoveryWatchdog(app, runtime.metrics.registry, "orderflow_features",
                                             config.recovery_stall_s)

    @app.agent(inputs, concurrency=1, name="features")
    async def features(stream: Any) -> None:
        await runtime.consume(stream)

    app.timer(max(0.02, min(config.idle_s, config.intervals_ns[0] / 1e9) / 4), name="bar-timer")(runtime.idle_tick)
    app.timer(config.commit_interval_s / 2, name="checkpoint-idle")(runtime.checkpoint_due)
    app.on_partitions_revoked.connect(cast(Any, runtime.on_revoked))
    app.on_partitions_assigned.connect(cast(Any, runtime.on_assigned))
    app.on_rebalance_complete.connect(cast(Any, runtime.on_rebalance_complete))
    register(app, runtime)
    signal = BarSignal()
    runtime.on_bars = signal.pulse
    features_stream.register(cast(Any, app.web).web_app, keeper, signal, runtime.metrics.registry,
                             config.heartbeat_s)  # the aiohttp driver's application
    return app, runtime
