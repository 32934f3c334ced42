"""Settings read from ``ORDERFLOW_*`` environment variables, in one place, validated once.

Every stage reads its configuration through :func:`load`; a bad value fails loudly with the variable's name and
what was expected, never later with a confusing error deep inside Kafka or PostgreSQL.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from topics.errors import SettingsError

PREFIX = "ORDERFLOW_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """The environment's settings. Field ``x_y`` is read from ``ORDERFLOW_X_Y``."""

    home: Path = PROJECT_ROOT / ".orderflow"  # data folders, logs, PID files, jar cache of the local stack
    bind_host: str = "127.0.0.1"  # address the services' HTTP servers (views, /metrics, /health, control) listen on
    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092  # the broker's client listener
    kafka_controller_port: int = 9093  # KRaft controller listener
    kafka_version: str = "4.1.1"
    kafka_heap: str = "2g"
    kafka_jit: str = "full"  # the broker's JIT: "full" (C1 then C2, as a long-running broker) or "quick" (C1 only)
    kafka_bootstrap: str = ""  # empty: kafka_host:kafka_port
    topic_partitions: int = 0  # 0: each topic's catalog default
    pg_host: str = "127.0.0.1"
    pg_port: int = 55432
    pg_database: str = "orderflow"
    pg_user: str = "orderflow"
    pg_password: str = "orderflow"
    pg_bin: str = ""  # folder of initdb/pg_ctl; empty: found on the machine
    pg_timescaledb: str = "auto"  # auto: TimescaleDB when the extension is installed | off: plain PostgreSQL
    log_level: str = "INFO"
    log_format: str = "json"  # "json" or "text"
    crossed_policy: str = "keep"  # keep | match | drop-stale
    frame_max_records: int = 250
    frame_linger_ms: float = 5.0
    exchange_data: Path = PROJECT_ROOT.parent / "shared" / "data" / "exchanges"  # recorded venue captures
    exchange_queue_max: int = 100_000  # records between the exchange sockets and Kafka
    exchange_queue_policy: str = "drop-oldest"  # drop-oldest | drop-newest, when that queue is full
    exchange_watchdog_s: float = 30.0  # reconnect a venue silent for this long
    exchange_linger_ms: float = 5.0  # how long `orderflow ingest` lets librdkafka gather a batch (latency vs requests)
    exchange_metrics_port: int = 9109  # Prometheus /metrics and /health of `orderflow ingest` (0: off)
    producer_compression: str = "lz4"  # lz4 | zstd | snappy | gzip | none: Kafka compression of the producers
    replay_control_port: int = 8790  # HTTP playback control of `orderflow replay` on loopback (0: any free port)
    live_metrics_port: int = 9111  # /metrics and /health of `orderflow live` (0: off)
    live_gateway: str = ""  # host of the Databento live gateway; empty: the dataset's own (<dataset>.lsg.databento.com)
    live_gateway_port: int = 13000  # port of that gateway
    sink_group: str = "orderflow-sink"  # Kafka consumer group of `orderflow sink`
    sink_metrics_port: int = 9108  # /metrics and /health of `orderflow sink`
    sink_batch_rows: int = 20_000  # the sink writes a batch when it holds this many rows...
    sink_batch_ms: float = 250.0  # ...or when its oldest message waited this long
    sink_max_pending_rows: int = 200_000  # rows held (batching, queued, being written) before the consumer pauses
    db_retention_days: int = 0  # raw rows older than this are dropped (0: kept forever)
    db_aggregate_retention_days: int = 0  # aggregate rows older than this are dropped (0: kept forever)
    db_compress_after_hours: int = 24  # TimescaleDB: compress chunks older than this (0: no compression policy)
    streams_app_id: str = "orderflow-books"  # Faust app id of `orderflow worker`: its consumer group and tables
    streams_web_port: int = 6066  # web views of `orderflow worker`; `orderflow run` gives worker i port + i
    streams_workdir: str = ""  # RocksDB folder of a worker; empty: <home>/streams/<app id>-<web port>
    streams_commit_interval_ms: float = 1000.0  # book checkpoints and offset commits, this often
    streams_mbp10_interval_ms: float = 1000.0  # at most one MBP-10 snapshot per instrument this often
    streams_publisher: str = "confluent"  # output producer: confluent (librdkafka) or faust (aiokafka)
    streams_session_timeout_ms: float = 10000.0  # Kafka group session: how soon a dead worker's books move
    streams_standby_replicas: int = 0  # Faust standby copies of the checkpoint table on other workers
    streams_gap_threshold: int = 0  # report a sequence jump larger than this as a gap anomaly (0: off)
    streams_loop: str = "uvloop"  # event loop of `orderflow worker`: uvloop or asyncio
    streams_fetch_wait_ms: int = 10  # longest a worker's fetch waits at the broker (Faust's own: 1500)
    streams_intake_min_bytes: int = 1  # the librdkafka intake's fetch returns once this much came...
    streams_intake_wait_ms: int = 100  # ...or after this long
    streams_output_linger_ms: float = 0.0  # how long the workers' librdkafka producer lets outputs wait for a batch
    streams_intake: str = "librdkafka"  # who reads the book worker's frames: librdkafka or faust (Faust's aiokafka)
    streams_switch_interval_us: int = 5000  # the workers' GIL switch interval (sys.setswitchinterval; Python's: 5000)
    streams_batch_max: int = 500  # records of a hot topic per agent event at most (1: one event per record)
    streams_recovery_stall_ms: float = 20000.0  # table recovery reading nothing this long: seek again, rebalance
    features_app_id: str = "orderflow-features"  # Faust app id of `orderflow features`: group, table names
    features_web_port: int = 6080  # web views of `orderflow features`
    features_workdir: str = ""  # RocksDB folder of the features worker; empty: <home>/streams/<app id>-<port>
    features_intervals_ms: str = "1000,60000"  # bar lengths, ms, comma-separated; each a multiple of the first
    features_commit_interval_ms: float = 1000.0  # feature checkpoints and offset commits, this often
    features_idle_ms: float = 250.0  # all inputs read to the end and silent this long: bars close by the wall clock
    features_intake: str = "faust"  # who reads the features worker's inputs: faust (aiokafka) or librdkafka
    features_finish_wait_ms: float = 250.0  # a closed bar's features wait at most this for other groups' signals
    features_regime_fit_bars: int = 600  # bars of volatility an instrument collects before its regime HMM is fitted
    streams_control_url: str = ""  # replay control API proxied by a worker's /control/*; empty: the local replay's
    streams_sse_heartbeat_ms: float = 15000.0  # SSE comment line sent to an idle client this often
    streams_sse_trade_ring: int = 1000  # recent trades kept per instrument for Last-Event-ID resume
    streams_sse_write_timeout_ms: float = 30000.0  # an SSE client whose socket takes no write for this long is dropped

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"{self.kafka_host}:{self.kafka_port}"

    @property
    def pg_dsn(self) -> str:
        return (
            f"host={self.pg_host} port={self.pg_port} dbname={self.pg_database} "
            f"user={self.pg_user} password={self.pg_password}"
        )

    def feature_intervals_ns(self) -> tuple[int, ...]:
        """``features_intervals_ms`` as increasing ns, each a multiple of the first."""
        name = f"{PREFIX}FEATURES_INTERVALS_MS={self.features_intervals_ms!r}"
        try:
            values = tuple(int(float(v) * 1_000_000) for v in self.features_intervals_ms.split(","))
        except ValueError:
            raise SettingsError(f"{name}: expected comma-separated milliseconds, e.g. 1000,60000") from None
        if not values or values[0] <= 0 or list(values) != sorted(set(values)) or any(v % values[0] for v in values):
            raise SettingsError(f"{name}: expected increasing positive lengths, each a multiple of the first")
        return values

    def __post_init__(self) -> None:
        for name, value, low, high in (
            ("kafka_port", self.kafka_port, 1, 65535),
            ("kafka_controller_port", self.kafka_controller_port, 1, 65535),
            ("pg_port", self.pg_port, 1, 65535),
            ("frame_max_records", self.frame_max_records, 1, 1_000_000),
            ("topic_partitions", self.topic_partitions, 0, 10_000),
            ("replay_control_port", self.replay_control_port, 0, 65535),
            ("sink_metrics_port", self.sink_metrics_port, 0, 65535),
            ("sink_batch_rows", self.sink_batch_rows, 1, 10_000_000),
            ("sink_max_pending_rows", self.sink_max_pending_rows, 1, 100_000_000),
            ("db_retention_days", self.db_retention_days, 0, 100_000),
            ("db_aggregate_retention_days", self.db_aggregate_retention_days, 0, 100_000),
            ("db_compress_after_hours", self.db_compress_after_hours, 0, 1_000_000),
            ("streams_web_port", self.streams_web_port, 1, 65535),
            ("streams_standby_replicas", self.streams_standby_replicas, 0, 16),
            ("streams_gap_threshold", self.streams_gap_threshold, 0, 4_294_967_295),
            ("streams_fetch_wait_ms", self.streams_fetch_wait_ms, 1, 60_000),
            ("streams_intake_wait_ms", self.streams_intake_wait_ms, 1, 60_000),
            ("streams_intake_min_bytes", self.streams_intake_min_bytes, 1, 100_000_000),
            ("streams_switch_interval_us", self.streams_switch_interval_us, 50, 1_000_000),
            ("features_web_port", self.features_web_port, 1, 65535),
            ("features_regime_fit_bars", self.features_regime_fit_bars, 10, 10_000_000),
            ("streams_sse_trade_ring", self.streams_sse_trade_ring, 1, 1_000_000),
            ("exchange_queue_max", self.exchange_queue_max, 1, 10_000_000),
            ("exchange_metrics_port", self.exchange_metrics_port, 0, 65535),
            ("live_metrics_port", self.live_metrics_port, 0, 65535),
            ("live_gateway_port", self.live_gateway_port, 1, 65535),
            ("streams_batch_max", self.streams_batch_max, 1, 100_000),
        ):
            if not low <= value <= high:
                raise SettingsError(f"{PREFIX}{name.upper()}={value}: expected an integer in [{low}, {high}]")
        if self.sink_batch_ms <= 0:
            raise SettingsError(f"{PREFIX}SINK_BATCH_MS={self.sink_batch_ms}: must be positive")
        if self.frame_linger_ms < 0:
            raise SettingsError(f"{PREFIX}FRAME_LINGER_MS={self.frame_linger_ms}: must not be negative")
        if not 0 <= self.features_finish_wait_ms <= 60_000:
            raise SettingsError(f"{PREFIX}FEATURES_FINISH_WAIT_MS={self.features_finish_wait_ms}: expected 0 to "
                                "60000 (0: a bar's features are published right after its signals)")
        for name, ms in (
            ("streams_commit_interval_ms", self.streams_commit_interval_ms),
            ("streams_mbp10_interval_ms", self.streams_mbp10_interval_ms),
            ("streams_session_timeout_ms", self.streams_session_timeout_ms),
            ("streams_recovery_stall_ms", self.streams_recovery_stall_ms),
            ("features_commit_interval_ms", self.features_commit_interval_ms),
            ("features_idle_ms", self.features_idle_ms),
            ("streams_sse_heartbeat_ms", self.streams_sse_heartbeat_ms),
            ("streams_sse_write_timeout_ms", self.streams_sse_write_timeout_ms),
        ):
            if ms <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()}={ms}: must be positive")
        self.feature_intervals_ns()  # validates ORDERFLOW_FEATURES_INTERVALS_MS
        _one_of("streams_publisher", self.streams_publisher, ("confluent", "faust"))
        _one_of("kafka_jit", self.kafka_jit, ("full", "quick"))
        _one_of("streams_loop", self.streams_loop, ("uvloop", "asyncio"))
        _one_of("streams_intake", self.streams_intake, ("librdkafka", "faust"))
        _one_of("features_intake", self.features_intake, ("librdkafka", "faust"))
        if not 0 <= self.streams_output_linger_ms <= 1000:
            raise SettingsError(f"{PREFIX}STREAMS_OUTPUT_LINGER_MS={self.streams_output_linger_ms}: expected 0 to 1000")
        if not 0 <= self.exchange_linger_ms <= 1000:
            raise SettingsError(f"{PREFIX}EXCHANGE_LINGER_MS={self.exchange_linger_ms}: expected 0 to 1000")
        if self.exchange_watchdog_s <= 0:
            raise SettingsError(f"{PREFIX}EXCHANGE_WATCHDOG_S={self.exchange_watchdog_s}: must be positive")
        _one_of("exchange_queue_policy", self.exchange_queue_policy, ("drop-oldest", "drop-newest"))
        _one_of("crossed_policy", self.crossed_policy, ("keep", "match", "drop-stale"))
        _one_of("producer_compression", self.producer_compression, ("lz4", "zstd", "snappy", "gzip", "none"))
        _one_of("log_format", self.log_format, ("json", "text"))
        _one_of("pg_timescaledb", self.pg_timescaledb, ("auto", "off"))
        _one_of("log_level", self.log_level.upper(), ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
        try:
            ipaddress.ip_address(self.bind_host)
        except ValueError as e:
            raise SettingsError(f"{PREFIX}BIND_HOST={self.bind_host!r}: expected an IP address such as 127.0.0.1 "
                                "or 0.0.0.0") from e


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SettingsError(f"{PREFIX}{name.upper()}={value!r}: expected one of {', '.join(allowed)}")


def _convert(name: str, raw: str, kind: type) -> object:
    try:
        if kind is Path:
            return Path(raw).expanduser().resolve()
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r}: expected {kind.__name__}") from None
    return raw


_TYPES: dict[str, type] = {"Path": Path, "int": int, "float": float, "str": str}


def load(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from ``environ`` (default ``os.environ``), with keyword ``overrides`` taking precedence."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = env.get(PREFIX + f.name.upper())
        if raw is not None and raw != "":
            values[f.name] = _convert(f.name, raw, _TYPES[str(f.type)])
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
