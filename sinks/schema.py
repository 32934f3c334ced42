"""What `orderflow db status` reports, `orderflow db refresh` does, and the TimescaleDB policies `db migrate`
applies from the settings (refresh, compression, retention). Policies are settings, not schema: each migrate
removes and re-adds them, so changing ORDERFLOW_DB_* and running migrate again applies the new values."""

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
    start_offset: str  # refresh policy window: from now - start_offset...
    end_offset: str  # ...to now - end_offset
    schedule: str


AGGREGATES = (
    Aggregate("bbo_1s", "10 minutes", "1 second", "5 seconds"),
    Aggregate("bbo_1m", "2 hours", "1 minute", "1 minute"),
    Aggregate("book_ohlcv_1m", "2 hours", "1 minute", "1 minute"),
    Aggregate("exchange_ohlcv_1m", "2 hours", "1 minute", "1 minute"),
)
AGGREGATE_NAMES = tuple(a.name for a in AGGREGATES)


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


def status(conn: psycopg.Connection) -> Status:
    """Mode, applied and pending migrations (with changed files flagged), and row counts."""
    done = migrate.applied(conn)
    mode = done[0].mode if done else migrate.detect_mode(conn)
    files = migrate.plan(mode)
    problems = [
        f"{a.name}: file changed after it was applied" for a, m in zip(done, files, strict=False)
        if a.checksum != m.checksum or a.name != m.name
    ]
    pending = [m.name for m in files[len(done):]]
    result = Status(mode_text(conn, mode), done, pending, problems)
    if done:
        for name in [t.name for t in TABLES] + list(AGGREGATE_NAMES):
            if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone() != (None,):
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()
                result.rows[name] = int(row[0]) if row else 0
    return result


def recorded_mode(conn: psycopg.Connection) -> str:
    done = migrate.applied(conn)
    if not done:
        raise SinkError("the database has no schema yet: run `orderflow db migrate` first")
    return done[0].mode


def apply_policies(conn: psycopg.Connection, settings: Settings) -> list[str]:
    """Set the TimescaleDB refresh, compression and retention policies from ``settings``; returns what was set."""
    done: list[str] = []
    for agg in AGGREGATES:
        conn.execute("SELECT remove_continuous_aggregate_policy(%s::regclass, if_exists => true)", (agg.name,))
        conn.execute("SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => %s::interval, "
                     "end_offset => %s::interval, schedule_interval => %s::interval)",
                     (agg.name, agg.start_offset, agg.end_offset, agg.schedule))
        done.append(f"refresh {agg.name} every {agg.schedule}")
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
    for name in AGGREGATE_NAMES:
        if mode == migrate.TIMESCALE:
            conn.execute("CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)", (name,))
        else:
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(sql.Identifier(name)))
        done.append(f"refreshed {name}")
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
