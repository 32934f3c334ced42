"""TimescaleDB mode for real: hypertables and their chunk intervals, compression segmented by instrument (rows,
replays, new rows and aggregates unchanged on compressed chunks), the refresh policies (history replayed behind
live data is materialized), raw and aggregate retention, each policy run through its own TimescaleDB job.

Every test skips, with the reason, where the session's cluster has no TimescaleDB (the extension is not installed,
or ORDERFLOW_PG_TIMESCALEDB=off). The policies' jobs are unscheduled as soon as they are added and run with
``CALL run_job`` so that the background scheduler does not race the assertions; one test checks that the scheduler
does run them."""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import pytest

from sinks import samples, schema, tables
from sinks.pgstore import PgStore
from tests.sinks.test_aggregates import assert_bbo_bars_equal_a_direct_computation, fetch
from tests.sinks.test_grafana import sample_rows
from topics.settings import Settings, load

pytestmark = pytest.mark.integration

REFRESH = "policy_refresh_continuous_aggregate"
COMPRESSION = "policy_compression"
RETENTION = "policy_retention"

SEGMENTBY = {  # docs/sinks.md, "Modes"
    "bbo": ["instrument_id", "publisher_id"],
    "mbp10": ["instrument_id", "publisher_id"],
    "book_trades": ["instrument_id", "publisher_id"],
    "book_anomalies": ["instrument_id", "publisher_id"],
    "exchange_trades": ["venue", "symbol"],
    "exchange_quotes": ["venue", "symbol"],
    "feature_vectors": ["instrument"],
    "regime_signals": ["instrument", "kind"],
}
CHUNK_INTERVAL = {
    "bbo": timedelta(hours=1), "mbp10": timedelta(hours=1), "exchange_quotes": timedelta(hours=1),
    "feature_vectors": timedelta(hours=1), "book_trades": timedelta(days=1), "exchange_trades": timedelta(days=1),
    "book_anomalies": timedelta(days=7), "regime_signals": timedelta(days=7),
}


@pytest.fixture
def ts_dsn(migrated_dsn: str, timescale: None) -> str:
    """A fresh schema migrated in TimescaleDB mode (skips without TimescaleDB)."""
    return migrated_dsn


def set_policies(dsn: str, settings: Settings) -> None:
    """``orderflow db migrate``'s policies from ``settings``, then every job of this schema unscheduled."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        schema.apply_policies(conn, settings)
        for job in jobs(conn):
            conn.execute("SELECT alter_job(%s::integer, scheduled => false)", (job,))


def jobs(conn: psycopg.Connection, proc: str | None = None, names: tuple[str, ...] = ()) -> list[int]:
    """The policy jobs of this schema's tables and aggregates (of one kind, on some of them)."""
    rows = conn.execute("SELECT job_id, proc_name, hypertable_name FROM timescaledb_information.jobs "
                        "WHERE hypertable_schema = current_schema() ORDER BY job_id").fetchall()
    return [job for job, p, name in rows if proc in (None, p) and (not names or name in names)]


def run_jobs(dsn: str, proc: str, *names: str) -> int:
    """Run the policy jobs of kind ``proc`` (on ``names``, or all) now, in this session; returns how many."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        chosen = jobs(conn, proc, names)
        for job in chosen:
            conn.execute("CALL run_job(%s::integer)", (job,))
    return len(chosen)


def write(dsn: str, rows: dict[str, list[tuple]]) -> dict[str, int]:
    store = PgStore(dsn)
    try:
        inserted = store.write_batch(rows)
        store.commit()
    finally:
        store.close()
    return inserted


def stored(dsn: str) -> dict[str, list[tuple]]:
    store = PgStore(dsn)
    try:
        return {t.name: store.fetch(t.name) for t in tables.TABLES}
    finally:
        store.close()


def bbo_rows(n: int, start_ns: int, step_ns: int, instruments: int = 3) -> list[tuple]:
    return [r for rec in samples.bbo_updates(n, instruments=instruments, start_ns=start_ns, step_ns=step_ns)
            for r in tables.BBO.rows_of(rec)]


def test_every_table_is_a_hypertable_with_its_chunk_interval_and_compression_settings(ts_dsn: str) -> None:
    with psycopg.connect(ts_dsn) as conn:
        intervals: dict[str, timedelta] = dict(conn.execute(
            "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_schema = current_schema() AND column_name = 'ts'").fetchall())
        settings = conn.execute(
            "SELECT hypertable_name, attname, segmentby_column_index, orderby_column_index "
            "FROM timescaledb_information.compression_settings WHERE hypertable_schema = current_schema() "
            "ORDER BY 1, coalesce(segmentby_column_index, 0), orderby_column_index").fetchall()
    assert {name: intervals.get(name) for name in CHUNK_INTERVAL} == CHUNK_INTERVAL
    for table in tables.TABLES:
        mine = [s for s in settings if s[0] == table.name]
        assert [s[1] for s in mine if s[2] is not None] == SEGMENTBY[table.name], table.name
        orderby = [s[1] for s in mine if s[3] is not None]
        assert orderby[0] == "ts", table.name
        # unique checks on compressed chunks can use the batches' metadata: the whole key is segmentby or orderby
        assert set(table.key) <= set(SEGMENTBY[table.name]) | set(orderby), table.name


def test_compressed_chunks_keep_their_rows_skip_replays_take_new_rows_and_aggregate_the_same(ts_dsn: str) -> None:
    set_policies(ts_dsn, load({}, db_compress_after_hours=24))
    rows = sample_rows()
    write(ts_dsn, rows)
    with psycopg.connect(ts_dsn, autocommit=True) as conn:
        schema.refresh(conn, load({}))
    before = stored(ts_dsn)

    assert run_jobs(ts_dsn, COMPRESSION) == len(tables.TABLES)  # the sample rows are from 2024: all older than 24 h
    chunks = fetch(ts_dsn, "SELECT hypertable_name, is_compressed FROM timescaledb_information.chunks "
                           "WHERE hypertable_schema = current_schema()")
    assert {name for name, _ in chunks} == {t.name for t in tables.TABLES}
    assert all(compressed for _, compressed in chunks), chunks
    assert stored(ts_dsn) == before

    assert write(ts_dsn, rows) == {name: 0 for name in rows}  # a replay into compressed chunks stores nothing
    assert stored(ts_dsn) == before

    late = bbo_rows(500, samples.START_NS + 17, 120_000_000)  # new keys inside the compressed chunks' range
    assert write(ts_dsn, {"bbo": late}) == {"bbo": len(late)}
    assert len(stored(ts_dsn)["bbo"]) == len(before["bbo"]) + len(late)
    with psycopg.connect(ts_dsn, autocommit=True) as conn:
        schema.refresh(conn, load({}))
    assert_bbo_bars_equal_a_direct_computation(ts_dsn, "bbo_1s", 1)
    assert_bbo_bars_equal_a_direct_computation(ts_dsn, "bbo_1m", 60)


def test_the_refresh_policies_materialize_history_replayed_behind_live_data(ts_dsn: str) -> None:
    """Live rows are materialized first, which moves the watermark to now; history replayed afterwards lies below
    it, where real-time aggregation does not look, so only a refresh policy whose window reaches back over it
    can make the aggregates whole."""
    set_policies(ts_dsn, load({}))
    now_ns = time.time_ns()
    write(ts_dsn, {"bbo": bbo_rows(600, now_ns - 300 * 10**9, 100_000_000, instruments=2)})
    assert run_jobs(ts_dsn, REFRESH, "bbo_1s", "bbo_1m") == 2
    write(ts_dsn, {"bbo": bbo_rows(3000, samples.START_NS, 37_000_000)})  # a replay of 2024
    assert run_jobs(ts_dsn, REFRESH, "bbo_1s", "bbo_1m") == 2
    with psycopg.connect(ts_dsn, autocommit=True) as conn:  # only what the policies materialized
        for view in ("bbo_1s", "bbo_1m"):
            conn.execute(f"ALTER MATERIALIZED VIEW {view} SET (timescaledb.materialized_only = true)")
    assert_bbo_bars_equal_a_direct_computation(ts_dsn, "bbo_1s", 1)
    assert_bbo_bars_equal_a_direct_computation(ts_dsn, "bbo_1m", 60)


def test_raw_retention_drops_old_chunks_and_the_aggregates_keep_their_rows_for_their_own_period(
        ts_dsn: str) -> None:
    ten_days_ago = time.time_ns() - 10 * 86_400 * 10**9
    write(ts_dsn, {"bbo": bbo_rows(3000, ten_days_ago, 37_000_000)})
    keep_30 = load({}, db_retention_days=30)
    with psycopg.connect(ts_dsn, autocommit=True) as conn:
        schema.refresh(conn, keep_30)
    aggregated = fetch(ts_dsn, "SELECT * FROM bbo_1m ORDER BY 1, 2, 3")
    assert len(aggregated) > 3
    assert_bbo_bars_equal_a_direct_computation(ts_dsn, "bbo_1m", 60)

    keep_5 = load({}, db_retention_days=5)  # raw rows are now past retention; aggregates are kept forever
    set_policies(ts_dsn, keep_5)
    assert run_jobs(ts_dsn, RETENTION) == len(tables.TABLES)
    assert fetch(ts_dsn, "SELECT count(*) FROM bbo") == [(0,)]
    assert run_jobs(ts_dsn, REFRESH) == len(schema.AGGREGATES)
    with psycopg.connect(ts_dsn, autocommit=True) as conn:
        schema.refresh(conn, keep_5)  # `orderflow db refresh` too leaves the dropped range alone
    assert fetch(ts_dsn, "SELECT * FROM bbo_1m ORDER BY 1, 2, 3") == aggregated

    set_policies(ts_dsn, load({}, db_retention_days=5, db_aggregate_retention_days=7))
    assert run_jobs(ts_dsn, RETENTION) == len(tables.TABLES) + len(schema.AGGREGATES)
    assert fetch(ts_dsn, "SELECT count(*) FROM bbo_1m") == [(0,)]


def test_the_background_scheduler_runs_the_refresh_policy(ts_dsn: str) -> None:
    with psycopg.connect(ts_dsn, autocommit=True) as conn:
        schema.apply_policies(conn, load({}))
        (job,) = jobs(conn, REFRESH, ("bbo_1s",))
        deadline = time.monotonic() + 90
        while True:
            row = conn.execute("SELECT last_run_status, total_successes FROM timescaledb_information.job_stats "
                               "WHERE job_id = %s::integer", (job,)).fetchone()
            if row and row[1]:
                break
            assert time.monotonic() < deadline, f"the bbo_1s refresh job never succeeded: {row}"
            time.sleep(0.5)
        errors = conn.execute("SELECT err_message FROM timescaledb_information.job_errors "
                              "WHERE job_id = %s::integer", (job,)).fetchall()
    assert row[0] == "Success" and errors == []
