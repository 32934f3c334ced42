"""Versioned SQL migrations: ``sinks/migrations/NNNN_name[.timescale|.plain].sql``, applied once, in order.

A version has either one file for both modes or one file per mode (``.timescale.sql`` / ``.plain.sql``). The mode
is chosen when the first migration runs (TimescaleDB when the extension is installed and not turned off with
``ORDERFLOW_PG_TIMESCALEDB=off``, plain PostgreSQL otherwise) and recorded in ``schema_migrations`` with each
file's SHA-256: a file changed after it was applied is an error, never silently re-run. Each migration runs in its
own transaction under an advisory lock, so two concurrent ``orderflow db migrate`` runs apply every file once.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from sinks.errors import MigrationError

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
TIMESCALE = "timescale"
PLAIN = "plain"
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?:\.(?P<variant>timescale|plain))?\.sql$")
_LOCK_KEY = 0x6F72646572666C6F  # "orderflo": one migrator at a time per database

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    mode       text NOT NULL CHECK (mode IN ('timescale', 'plain')),
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # the file name
    path: Path
    variant: str | None  # "timescale", "plain" or None (both modes)

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    mode: str
    checksum: str
    applied_at: str


@dataclass
class MigrateReport:
    mode: str
    applied: list[Migration]
    already: int


def discover(directory: Path = MIGRATIONS_DIR) -> dict[int, list[Migration]]:
    """Every migration file by version; a file whose name does not follow the pattern is an error."""
    found: dict[int, list[Migration]] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: expected NNNN_name.sql, NNNN_name.timescale.sql or NNNN_name.plain.sql")
        m = Migration(int(match["version"]), path.name, path, match["variant"])
        found.setdefault(m.version, []).append(m)
    return found


def plan(mode: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations of ``mode``, one per version, in order; gaps and ambiguous versions are errors."""
    chosen = []
    by_version = discover(directory)
    for expected, version in enumerate(sorted(by_version), start=1):
        if version != expected:
            raise MigrationError(f"migration versions must be 1, 2, 3...: found {version:04d} where {expected:04d} "
                                 "was expected")
        chosen.append(_pick(by_version[version], mode))
    return chosen


def _pick(files: list[Migration], mode: str) -> Migration:
    common = [m for m in files if m.variant is None]
    mine = [m for m in files if m.variant == mode]
    if common and len(files) > 1:
        names = ", ".join(m.name for m in files)
        raise MigrationError(f"version {files[0].version:04d} has a file for both modes and per-mode files: {names}")
    if common:
        return common[0]
    if not mine:
        raise MigrationError(f"version {files[0].version:04d} has no file for mode {mode!r} "
                             f"(found {', '.join(m.name for m in files)})")
    return mine[0]


def timescale_version(conn: psycopg.Connection) -> str | None:
    """The installed TimescaleDB extension version in this database, or None."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return str(row[0]) if row else None


def detect_mode(conn: psycopg.Connection, timescaledb: bool = True) -> str:
    """TIMESCALE when the extension is (or can be) created in this database, PLAIN otherwise or when
    ``timescaledb`` is False (``ORDERFLOW_PG_TIMESCALEDB=off``)."""
    if not timescaledb:
        return PLAIN
    if timescale_version(conn):
        return TIMESCALE
    available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if not available:
        return PLAIN
    # CREATE EXTENSION of a timescaledb that the server did not preload is FATAL: it ends the connection. The
    # preloaded loader defines timescaledb.disable_load in every backend (shared_preload_libraries itself is not
    # readable by an ordinary role).
    if conn.execute("SELECT 1 FROM pg_settings WHERE name = 'timescaledb.disable_load'").fetchone() is None:
        logger.warning("timescaledb is installed but the server does not preload it (shared_preload_libraries): "
                       "using plain PostgreSQL")
        return PLAIN
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as e:
        logger.warning("timescaledb is installed but cannot be created here (%s): using plain PostgreSQL",
                       str(e).strip().splitlines()[0])
        return PLAIN
    return TIMESCALE


def applied(conn: psycopg.Connection) -> list[Applied]:
    """The rows of ``schema_migrations`` (empty when the table does not exist yet)."""
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
        return []
    rows = conn.execute("SELECT version, name, mode, checksum, applied_at::text FROM schema_migrations "
                        "ORDER BY version").fetchall()
    return [Applied(*row) for row in rows]


def migrate(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR, timescaledb: bool = True) -> MigrateReport:
    """Apply the pending migrations (``conn`` in autocommit mode); idempotent. ``timescaledb`` False builds a new
    database in plain mode even where the extension is available; a database already migrated keeps its mode."""
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        conn.execute(_CREATE_TABLE)
        done = applied(conn)
        mode = _mode(conn, done, timescaledb)
        migrations = plan(mode, directory)
        _verify(done, migrations)
        pending = migrations[len(done):]
        for m in pending:
            _apply(conn, m, mode)
        return MigrateReport(mode, pending, len(done))
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _mode(conn: psycopg.Connection, done: list[Applied], timescaledb: bool) -> str:
    if not done:
        return detect_mode(conn, timescaledb)
    recorded = done[0].mode
    if recorded == PLAIN and not timescaledb:
        return recorded
    detected = detect_mode(conn)
    if recorded == TIMESCALE and detected != TIMESCALE:
        raise MigrationError("this database was migrated with TimescaleDB, which is no longer available here")
    if recorded == PLAIN and detected == TIMESCALE:
        logger.warning("TimescaleDB is available but this database was built in plain PostgreSQL mode; "
                       "staying plain (migrate into a new database to use hypertables)")
    return recorded


def _verify(done: list[Applied], migrations: list[Migration]) -> None:
    if len(done) > len(migrations):
        missing = ", ".join(a.name for a in done[len(migrations):])
        raise MigrationError(f"applied migrations have no file any more: {missing}")
    for record, m in zip(done, migrations, strict=False):
        if record.version != m.version or record.name != m.name:
            raise MigrationError(f"migration {record.version:04d} was applied as {record.name}, the file now is "
                                 f"{m.name}")
        if record.checksum != m.checksum:
            raise MigrationError(
                f"migration {m.name} was changed after it was applied (recorded sha256 {record.checksum[:12]}, "
                f"file {m.checksum[:12]}); add a new migration instead of editing an applied one"
            )


def _apply(conn: psycopg.Connection, m: Migration, mode: str) -> None:
    logger.info("applying migration %s", m.name)
    try:
        with conn.transaction():
            conn.execute(m.sql.encode())
            conn.execute("INSERT INTO schema_migrations (version, name, mode, checksum) VALUES (%s, %s, %s, %s)",
                         (m.version, m.name, mode, m.checksum))
    except psycopg.Error as e:
        raise MigrationError(f"migration {m.name} failed: {str(e).strip()}") from e
