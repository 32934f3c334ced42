"""The workers' configurations: the ``ORDERFLOW_*`` settings plus what the command line overrides.

:class:`FaustWorkerConfig` holds what the book and the features workers share (broker, folders, web server,
Faust's timing, batching, the recovery watchdog); :class:`WorkerConfig` adds the book worker's own fields, and
``streams.features_app.FeaturesConfig`` the features worker's."""

from __future__ import annotations

import gc
import logging
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.intake import FETCH_MIN_BYTES, FETCH_WAIT_MS
from streams.publisher import OutputTopics
from topics import catalog
from topics.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaustWorkerConfig:
    """What every Faust worker of the project is configured with."""

    app_id: str  # Faust app id: consumer group, table and changelog names
    bootstrap: str  # host:port of the broker
    web_port: int
    workdir: Path  # RocksDB and Faust data of this worker (one per worker process)
    partitions: int  # of the input topics, and of the checkpoint table's changelog
    commit_interval_s: float = 1.0
    publisher: str = "confluent"  # confluent | faust
    session_timeout_s: float = 10.0
    loop: str = "uvloop"
    fetch_wait_ms: int = 10
    intake_wait_ms: int = FETCH_WAIT_MS  # the librdkafka intake's fetches (streams.intake)
    intake_min_bytes: int = FETCH_MIN_BYTES
    output_linger_ms: float = 0.0  # the librdkafka output producer's linger (streams.output)
    switch_interval_us: int = 5000  # the GIL's switch interval in the worker process
    intake: str = "librdkafka"  # who reads the hot topics: librdkafka (streams.intake) or faust (aiokafka)
    recovery_stall_s: float = 20.0  # see streams.recovery_watch
    batch_max: int = 500  # see streams.batching
    bind_host: str = "127.0.0.1"  # the web server listens here

    @property
    def worker_name(self) -> str:
        return f"{socket.gethostname()}:{self.web_port}"

    @property
    def broker_url(self) -> str:
        return f"kafka://{self.bootstrap}"


def prepare_process(config: FaustWorkerConfig) -> None:
    """Set what a worker process runs with before its app is made: the event loop and the GIL's switch interval.

    The worker's Kafka consumer runs in a thread of its own (Faust's consumer thread); while the agent computes, a
    fetch response can wait for the GIL up to one switch interval at each step of its way to the agent. Shorter
    intervals were measured against the default on the features worker and did no better than the spread between
    runs (docs/benchmarks.md), so the default stays Python's."""
    if config.loop == "uvloop":
        import uvloop

        uvloop.install()
    sys.setswitchinterval(config.switch_interval_us / 1e6)


def freeze_heap() -> None:
    """Once per process, when the worker is first ready: collect, then move every object alive into the collector's
    permanent generation (``gc.freeze``). Python's full collections walk every tracked object; in a features
    worker they came every 4-5 s and took tens of milliseconds each (modules, Faust, the engine), always finding
    nothing, and a bar closing under one waited it out. After the freeze they walk only what came since
    (``orderflow_*_gc_pause_seconds``; docs/benchmarks.md).
    Frozen objects are still freed when nothing refers to them; only a reference cycle among them stays."""
    if gc.get_freeze_count():
        return
    gc.collect()
    gc.freeze()
    logger.info("heap frozen after start-up: %d objects left out of full collections", gc.get_freeze_count())


def shared_fields(settings: Settings, *, app_id: str, web_port: int, workdir: Path | None, workdir_setting: str,
                  partitions: int, commit_interval_ms: float, intake: str) -> dict[str, Any]:
    """The :class:`FaustWorkerConfig` fields from the settings; ``workdir`` defaults to ``workdir_setting`` (the
    worker's own setting) or ``<home>/streams/<app>-<port>``."""
    if workdir is None:
        workdir = Path(workdir_setting) if workdir_setting else Path(settings.home) / "streams" / f"{app_id}-{web_port}"
    return {
        "app_id": app_id, "bootstrap": settings.bootstrap_servers, "web_port": web_port, "workdir": workdir,
        "partitions": partitions, "commit_interval_s": commit_interval_ms / 1000,
        "publisher": settings.streams_publisher, "session_timeout_s": settings.streams_session_timeout_ms / 1000,
        "loop": settings.streams_loop, "fetch_wait_ms": settings.streams_fetch_wait_ms,
        "intake_wait_ms": settings.streams_intake_wait_ms, "intake_min_bytes": settings.streams_intake_min_bytes,
        "output_linger_ms": settings.streams_output_linger_ms,
        "switch_interval_us": settings.streams_switch_interval_us, "intake": intake,
        "recovery_stall_s": settings.streams_recovery_stall_ms / 1000, "batch_max": settings.streams_batch_max,
        "bind_host": settings.bind_host,
    }


@dataclass(frozen=True)
class WorkerConfig(FaustWorkerConfig):
    """A book worker."""

    mbp10_interval_s: float = 1.0
    standby_replicas: int = 0
    gap_threshold: int = 0
    crossed_policy: str = "keep"
    topics: OutputTopics = field(default_factory=OutputTopics)

    @classmethod
    def from_settings(cls, settings: Settings, *, web_port: int | None = None, workdir: Path | None = None,
                      app_id: str | None = None, topic_prefix: str = "") -> WorkerConfig:
        port = web_port if web_port is not None else settings.streams_web_port
        shared = shared_fields(settings, app_id=app_id or settings.streams_app_id, web_port=port, workdir=workdir,
                               workdir_setting=settings.streams_workdir,
                               partitions=settings.topic_partitions or catalog.MBO_FRAMES.partitions,
                               commit_interval_ms=settings.streams_commit_interval_ms,
                               intake=settings.streams_intake)
        return cls(
            **shared, mbp10_interval_s=settings.streams_mbp10_interval_ms / 1000,
            standby_replicas=settings.streams_standby_replicas, gap_threshold=settings.streams_gap_threshold,
            crossed_policy=settings.crossed_policy, topics=OutputTopics.with_prefix(topic_prefix),
        )
