"""The Faust app of a features worker: the input topics, the checkpoint table, the agent, the timers, the views.

A separate app id (consumer group) from the book workers. Partition ``p`` of every input topic forms one group
(Faust assigns co-partitioned topics together), checkpointed under ``group/<p>`` in a RocksDB table whose
changelog has one partition per group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import faust

from processors.features import FeatureConfig
from processors.regime import RegimeConfig
from streams import features_stream
from streams.app import CHANGELOG_CONFIG, output_sink, prepare_app, worker_settings
from streams.config import FaustWorkerConfig, shared_fields
from streams.features_group import FeatureTopics, GroupKeeper
from streams.features_runtime import FeaturesRuntime, TableGroupStore
from streams.features_stream import BarSignal
from streams.features_web import FeatureMetrics, register
from streams.recovery_watch import RecoveryWatchdog
from topics import catalog
from topics.settings import Settings

logger = logging.getLogger(__name__)

TABLE = "feature-checkpoints"


@dataclass(frozen=True)
class FeaturesConfig(FaustWorkerConfig):
    """A features worker."""

    intervals_ns: tuple[int, ...] = (1_000_000_000, 60_000_000_000)
    idle_s: float = 0.25
    finish_wait_s: float = 0.25
    regime_fit_bars: int = 600
    topics: FeatureTopics = field(default_factory=FeatureTopics)
    heartbeat_s: float = 15.0  # SSE comment line to an idle /stream/features client

    @classmethod
    def from_settings(cls, settings: Settings, *, web_port: int | None = None, workdir: Path | None = None,
                      app_id: str | None = None, topic_prefix: str = "") -> FeaturesConfig:
        port = web_port if web_port is not None else settings.features_web_port
        shared = shared_fields(settings, app_id=app_id or settings.features_app_id, web_port=port, workdir=workdir,
                               workdir_setting=settings.features_workdir,
                               partitions=settings.topic_partitions or catalog.BOOK_BBO.partitions,
                               commit_interval_ms=settings.features_commit_interval_ms,
                               intake=settings.features_intake)
        return cls(
            **shared, intervals_ns=settings.feature_intervals_ns(), idle_s=settings.features_idle_ms / 1000,
            finish_wait_s=settings.features_finish_wait_ms / 1000,
            regime_fit_bars=settings.features_regime_fit_bars, topics=FeatureTopics.with_prefix(topic_prefix),
            heartbeat_s=settings.streams_sse_heartbeat_ms / 1000,
        )


def faust_settings(config: FeaturesConfig) -> dict[str, Any]:
    return {
        **worker_settings(config),
        "stream_buffer_maxsize": 4096,
        "table_standby_replicas": 0,
    }


def keeper_for(config: FeaturesConfig) -> GroupKeeper:
    features = FeatureConfig(intervals_ns=config.intervals_ns)
    regime = RegimeConfig(fit_bars=config.regime_fit_bars)
    return GroupKeeper(config.topics, features, regime)


def create_app(config: FeaturesConfig) -> tuple[faust.App, FeaturesRuntime]:
    config.workdir.mkdir(parents=True, exist_ok=True)
    keeper = keeper_for(config)
    app = prepare_app(config, faust_settings(config), batch_topics=keeper.types)
    raw: faust.Schema = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    inputs = app.topic(*keeper.types, schema=raw, partitions=config.partitions)
    table = app.Table(TABLE, partitions=config.partitions, key_type=bytes, value_type=bytes,
                      extra_topic_configs=CHANGELOG_CONFIG)
    sink = output_sink(config, app)
    runtime = FeaturesRuntime(app, keeper, TableGroupStore(table), sink, FeatureMetrics(),
                              config.commit_interval_s, config.idle_s, config.worker_name, config.finish_wait_s)
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
