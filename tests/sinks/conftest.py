"""Fixtures of the sink tests: a private schema per test in the session's database, migrated or not, and a
RowStore of either kind for the suite that runs against both."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from ops.stack.testing import LocalStack
from sinks import migrate, schema
from sinks.pgstore import PgStore
from sinks.store import MemoryStore, RowStore


def timescaledb_allowed(stack: LocalStack) -> bool:
    """False when the session runs with ORDERFLOW_PG_TIMESCALEDB=off (plain mode forced)."""
    return stack.settings.pg_timescaledb != "off"


@pytest.fixture
def pg_schema(stack: LocalStack) -> Iterator[str]:
    """A DSN whose search_path is a fresh, empty schema (dropped after the test), plus the TimescaleDB
    extension's schema when the database has it."""
    name = f"t_{os.getpid()}_{os.urandom(3).hex()}"
    with psycopg.connect(stack.pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield schema.schema_dsn(stack.pg_dsn, name)
    finally:
        drop_schema(stack.pg_dsn, name)


SCHEMA_JOBS = """
SELECT j.job_id FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.continuous_aggregates c
  ON c.materialization_hypertable_schema = j.hypertable_schema
 AND c.materialization_hypertable_name = j.hypertable_name
WHERE j.hypertable_schema = %(s)s OR c.view_schema = %(s)s
"""


def drop_schema(dsn: str, name: str, attempts: int = 5) -> None:
    """Drop a test's schema. Its TimescaleDB background jobs (policies of its hypertables and continuous
    aggregates) go first; one running meanwhile can still deadlock with the drop, which is then tried again."""
    for attempt in range(1, attempts + 1):
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
                    for (job_id,) in conn.execute(SCHEMA_JOBS, {"s": name}).fetchall():
                        conn.execute("SELECT delete_job(%s)", (job_id,))
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            return
        except psycopg.errors.DeadlockDetected:
            if attempt == attempts:
                raise
            time.sleep(0.5 * attempt)


@pytest.fixture
def migrated_dsn(stack: LocalStack, pg_schema: str) -> str:
    """A fresh schema with every migration applied, in the session's mode."""
    with psycopg.connect(pg_schema, autocommit=True) as conn:
        migrate.migrate(conn, timescaledb=timescaledb_allowed(stack))
    return pg_schema


@pytest.fixture
def timescale(stack: LocalStack) -> None:
    """Skip (with the reason) unless the session's database has TimescaleDB."""
    if not timescaledb_allowed(stack):
        pytest.skip("ORDERFLOW_PG_TIMESCALEDB=off: this session runs plain PostgreSQL mode")
    with psycopg.connect(stack.pg_dsn, autocommit=True) as conn:
        if migrate.detect_mode(conn) != migrate.TIMESCALE:
            pytest.skip("the timescaledb extension is absent from the test cluster (plain PostgreSQL mode); Debian "
                        "does not package it: install timescaledb-2-postgresql-15 from Timescale's apt repository "
                        "to run the hypertable and continuous-aggregate tests")


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.integration)])
def store_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[], RowStore]]:
    """Makes stores of one kind over one shared state: the in-memory twin, or PostgreSQL in a migrated schema."""
    opened: list[RowStore] = []
    if request.param == "memory":
        shared = MemoryStore()

        def make() -> RowStore:
            shared.closed = False
            return shared
    else:
        dsn = request.getfixturevalue("migrated_dsn")

        def make() -> RowStore:
            store = PgStore(dsn)
            opened.append(store)
            return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: Callable[[], RowStore]) -> RowStore:
    return store_factory()
