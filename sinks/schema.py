"""What `orderflow db status` reports, `orderflow db refresh` does, and the TimescaleDB policies `db migrate`
applies from the settings (refresh, compression, retention). Policies are settings, not schema: each migrate
replaces them (in one transaction), so changing ORDERFLOW_DB_* and running migrate again applies the new values.

The continuous aggregates are refreshed over everything the raw tables still hold: from ``now -
ORDERFLOW_DB_RETENTION_DAYS`` (all history when 0) to ``now - end_offset``. A refresh recomputes only the buckets
whose raw rows changed since the last one (TimescaleDB's invalidation log), so the wide window costs nothing when
nothing changed, and late or replayed (historical) rows are materialized too: a narrow window (say the last two
hours) would leave them below the watermark, where real-time aggregation no longer looks, and the aggregates would
miss them for good. The window stops at the raw retention because dropping raw chunks invalidates their range: a
refresh over it would delete the aggregate rows that ``ORDERFLOW_DB_AGGREGATE_RETENTION_DAYS`` is meant to keep.
Buckets newer than ``now - end_offset`` are left to real-time aggregation, so the newest bucket is always current.

TimescaleDB >= 2.19 splits a policy's window into batches of ``buckets_per_batch`` buckets (default 1) and lists
them with a generate_series over the whole window: for 1 s bars over a window reaching back to 2024 one run (due
every 5 s) took 86.7 s. Batches of one day keep that list to a few hundred rows (0.01 s a run) and still commit
a long catch-up (a replayed month) one day at a time.

Compression and retention policies go on the base tables of :data:`sinks.tables.TABLES`: for feature bars that is
the hypertable ``feature_vectors``; ``feature_bars`` is a view over it since migration 0005."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from sinks import migrate
from sinks.errors import SinkError
from sinks.tables import TABLES
from topics.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Aggregate:
    name: str
    bucket_s: int  # bucket width in seconds
    end_offset: str  # refreshed up to now - end_offset (one bucket): newer buckets are real-time aggregated
    schedule: str  # how often the refresh policy runs

    @property
    def buckets_per_day(self) -> int:
        return 86_400 // self.bucket_s


AGGREGATES = (
    Aggregate("bbo_1s", 1, "1 second", "5 seconds"),
    Aggregate("bbo_1m", 60, "1 minute", "1 minute"),
    Aggregate("book_ohlcv_1m", 60, "1 minute", "1 minute"),
    Aggregate("exchange_ohlcv_1m", 60, "1 minute", "1 minute"),
)
AGGREGATE_NAMES = tuple(a.name for a in AGGREGATES)
# tables no topic feeds directly, counted by `db status`; never dropped by retention (feature_vectors refers to it)
LOOKUP_TABLES = ("feature_sets",)


@dataclass
class Status:
    mode: str  # "TimescaleDB 2.x.y" or "plain PostgreSQL 15.x"
    applied: list[migrate.Applied]
    pending: list[str]
    problems: list[str]
    rows: dict[str, int] = field(default_factory=dict)


def mode_text(conn: psycopg.Connection, mode: str) -> str:
    if mode == migrate.TIMESCALE:
        return f"TimescaleDB {migrate.timescale_version(conn) or '(extension missing)'}"
    row = conn.execute("SHOW server_version").fetchone()
    return f"plain PostgreSQL {row[0] if row else '?'}"


def status(conn: psycopg.Connection, timescaledb: bool = True) -> Status:
    """Mode, applied and pending migrations (with changed files flagged), and row counts; before the first
    migration, the mode it would pick (``timescaledb`` False: plain)."""
    done = migrate.applied(conn)
    mode = done[0].mode if done else migrate.detect_mode(conn, timescaledb)
    files = migrate.plan(mode)
    problems = [
        f"{a.name}: file changed after it was applied" for a, m in zip(done, files, strict=False)
        if a.checksum != m.checksum or a.name != m.name
    ]
    pending = [m.name for m in files[len(done):]]
    result = Status(mode_text(conn, mode), done, pending, problems)
    if done:
        for name in [t.name for t in TABLES] + list(LOOKUP_TABLES) + list(AGGREGATE_NAMES):
            if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone() != (None,):
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()
                result.rows[name] = int(row[0]) if row else 0
    return result


def schema_dsn(dsn: str, schema: str) -> str:
    """``dsn`` with its tables resolved in ``schema`` only (tests and benchmarks work in a private schema), plus
    the schema holding the TimescaleDB extension when the database has it, so that the migrations find
    ``create_hypertable``, ``time_bucket``, ``first`` and ``last``. ``schema`` must be a plain lower-case name."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT extnamespace::regnamespace::text FROM pg_extension "
                           "WHERE extname = 'timescaledb'").fetchone()
    path = schema if row is None else f"{schema},{row[0]}"
    return f"{dsn} options='-c search_path={path}'"


def recorded_mode(conn: psycopg.Connection) -> str:
    done = migrate.applied(conn)
    if not done:
        raise SinkError("the database has no schema yet: run `orderflow db migrate` first")
    return done[0].mode


def refresh_start(settings: Settings) -> str | None:
    """How far back the aggregates are refreshed: the raw retention (``"30 days"``), or None for all history."""
    return f"{settings.db_retention_days} days" if settings.db_retention_days else None


def apply_policies(conn: psycopg.Connection, settings: Settings) -> list[str]:
    """Set the TimescaleDB refresh, compression and retention policies from ``settings`` (all or none: one
    transaction); returns what was set."""
    with conn.transaction():
        return _apply_policies(conn, settings)


def _apply_policies(conn: psycopg.Connection, settings: Settings) -> list[str]:
    done: list[str] = []
    start = refresh_start(settings)
    row = conn.execute("SELECT bool_or('buckets_per_batch' = ANY(proargnames)) FROM pg_proc "
                       "WHERE proname = 'add_continuous_aggregate_policy'").fetchone()
    batched = bool(row and row[0])  # TimescaleDB >= 2.19: batches of one day (see the module's docstring)
    batching = ", buckets_per_batch => %s::integer" if batched else ""
    for agg in AGGREGATES:
        params = [agg.name, start, agg.end_offset, agg.schedule] + ([agg.buckets_per_day] if batched else [])
        conn.execute("SELECT remove_continuous_aggregate_policy(%s::regclass, if_exists => true)", (agg.name,))
        conn.execute("SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => %s::interval, "
                     "end_offset => %s::interval, schedule_interval => %s::interval" + batching + ")", params)
        done.append(f"refresh {agg.name} every {agg.schedule}, from {f'now - {start}' if start else 'the start'} "
                    f"to now - {agg.end_offset}")
    for table in TABLES:
        conn.execute("SELECT remove_compression_policy(%s::regclass, if_exists => true)", (table.name,))
        if settings.db_compress_after_hours:
            conn.execute("SELECT add_compression_policy(%s::regclass, make_interval(hours => %s))",
                         (table.name, settings.db_compress_after_hours))
            done.append(f"compress {table.name} after {settings.db_compress_after_hours} h")
    retention = [(t.name, settings.db_retention_days) for t in TABLES]
    retention += [(a, settings.db_aggregate_retention_days) for a in AGGREGATE_NAMES]
    for name, days in retention:
        conn.execute("SELECT remove_retention_policy(%s::regclass, if_exists => true)", (name,))
        if days:
            conn.execute("SELECT add_retention_policy(%s::regclass, make_interval(days => %s))", (name, days))
            done.append(f"drop {name} rows after {days} days")
    return done


def refresh(conn: psycopg.Connection, settings: Settings) -> list[str]:
    """Bring the aggregates up to date (``conn`` in autocommit mode); plain mode also applies retention."""
    mode = recorded_mode(conn)
    done = []
    start = refresh_start(settings)
    for agg in AGGREGATES:
        if mode == migrate.TIMESCALE:
            # the refresh policies' window (see the module's docstring), now rather than on their schedule
            conn.execute("CALL refresh_continuous_aggregate(%s::regclass, now() - %s::interval, "
                         "now() - %s::interval)", (agg.name, start, agg.end_offset))
        else:
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(sql.Identifier(agg.name)))
        done.append(f"refreshed {agg.name}")
    if mode == migrate.PLAIN:
        done += _plain_retention(conn, settings)
    return done


def _plain_retention(conn: psycopg.Connection, settings: Settings) -> list[str]:
    done = []
    targets = [(t.name, "ts", settings.db_retention_days) for t in TABLES]
    for name, column, days in targets:
        if days:
            cur = conn.execute(sql.SQL("DELETE FROM {} WHERE {} < now() - make_interval(days => %s)").format(
                sql.Identifier(name), sql.Identifier(column)), (days,))
            done.append(f"deleted {cur.rowcount} {name} rows older than {days} days")
    return done
