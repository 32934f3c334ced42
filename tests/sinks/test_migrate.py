"""Versioned migrations: file rules (unit), idempotence, checksums, schema = table specs (PostgreSQL)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import psycopg
import pytest

from sinks import migrate, schema, tables
from sinks.errors import MigrationError
from topics.settings import load


def write(folder: Path, name: str, text: str = "SELECT 1;") -> None:
    (folder / name).write_text(text)


@pytest.mark.unit
def test_the_shipped_migrations_plan_in_both_modes() -> None:
    for mode in (migrate.PLAIN, migrate.TIMESCALE):
        plan = migrate.plan(mode)
        assert [m.version for m in plan] == list(range(1, len(plan) + 1))
        assert all(m.variant in (None, mode) for m in plan)


@pytest.mark.unit
def test_per_mode_files_are_picked_by_mode(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql")
    write(tmp_path, "0002_b.plain.sql")
    write(tmp_path, "0002_b.timescale.sql")
    assert [m.name for m in migrate.plan(migrate.PLAIN, tmp_path)] == ["0001_a.sql", "0002_b.plain.sql"]
    assert migrate.plan(migrate.TIMESCALE, tmp_path)[1].name == "0002_b.timescale.sql"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["0001_a.sql", "0003_c.sql"], "found 0003 where 0002 was expected"),
        (["0001_a.sql", "0001_a.plain.sql"], "both modes and per-mode files"),
        (["0001_a.timescale.sql"], "no file for mode 'plain'"),
        (["1_bad.sql"], "expected NNNN_name.sql"),
    ],
)
def test_bad_migration_folders_are_errors(tmp_path: Path, files: list[str], message: str) -> None:
    for name in files:
        write(tmp_path, name)
    with pytest.raises(MigrationError, match=message):
        migrate.plan(migrate.PLAIN, tmp_path)


@pytest.mark.integration
def test_migrate_is_idempotent_and_records_checksums(pg_schema: str) -> None:
    with psycopg.connect(pg_schema, autocommit=True) as conn:
        first = migrate.migrate(conn)
        second = migrate.migrate(conn)
        done = migrate.applied(conn)
    assert len(first.applied) == len(migrate.plan(first.mode)) and first.already == 0
    assert second.applied == [] and second.already == len(first.applied)
    assert [a.checksum for a in done] == [m.checksum for m in first.applied]


@pytest.mark.integration
def test_detecting_the_mode_leaves_the_connection_usable(pg_schema: str) -> None:
    """Where TimescaleDB is installed but the server does not preload it (ORDERFLOW_PG_TIMESCALEDB=off here),
    trying CREATE EXTENSION would end the connection (FATAL): detection says plain instead."""
    with psycopg.connect(pg_schema, autocommit=True) as conn:
        mode = migrate.detect_mode(conn)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        preloaded = conn.execute("SELECT 1 FROM pg_settings WHERE name = 'timescaledb.disable_load'").fetchone()
    assert mode == (migrate.TIMESCALE if preloaded else migrate.PLAIN)


@pytest.mark.integration
def test_a_changed_applied_migration_is_an_error(pg_schema: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, folder)
    with psycopg.connect(pg_schema, autocommit=True) as conn:
        migrate.migrate(conn, folder)
        target = sorted(folder.glob("0003_*.sql"))[0]
        target.write_text(target.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match=re.escape(f"{target.name} was changed after it was applied")):
            migrate.migrate(conn, folder)


@pytest.mark.integration
def test_a_new_migration_file_is_applied_alone(pg_schema: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, folder)
    with psycopg.connect(pg_schema, autocommit=True) as conn:
        migrate.migrate(conn, folder)
        n = len(migrate.plan(migrate.PLAIN, folder))
        write(folder, f"{n + 1:04d}_extra.sql", "CREATE TABLE extra (x int);")
        report = migrate.migrate(conn, folder)
        assert [m.name for m in report.applied] == [f"{n + 1:04d}_extra.sql"]


@pytest.mark.integration
def test_a_failing_migration_leaves_nothing_behind(pg_schema: str, tmp_path: Path) -> None:
    write(tmp_path, "0001_ok.sql", "CREATE TABLE ok (x int);")
    write(tmp_path, "0002_bad.sql", "CREATE TABLE half (x int); SELECT no_such_function();")
    with psycopg.connect(pg_schema, autocommit=True) as conn:
        with pytest.raises(MigrationError, match=r"0002_bad\.sql failed"):
            migrate.migrate(conn, tmp_path)
        assert [a.name for a in migrate.applied(conn)] == ["0001_ok.sql"]
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)


@pytest.mark.integration
@pytest.mark.parametrize("table", tables.TABLES, ids=lambda t: t.name)
def test_each_table_has_the_columns_the_sink_copies(migrated_dsn: str, table: tables.TableSpec) -> None:
    with psycopg.connect(migrated_dsn) as conn:
        cols = conn.execute(
            "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position", (table.name,)
        ).fetchall()
    assert cols == [(c.name, tables.SQL_TYPES[c.kind], c.nullable) for c in table.columns]


@pytest.mark.integration
def test_status_names_the_mode_and_counts_rows(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        st = schema.status(conn)
    assert st.mode.startswith(("plain PostgreSQL 15", "TimescaleDB "))
    assert st.pending == [] and st.problems == []
    assert st.rows["bbo"] == 0 and "bbo_1m" in st.rows and st.rows["feature_sets"] == 0


@pytest.mark.integration
def test_refresh_runs_in_the_recorded_mode(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        done = schema.refresh(conn, load({}))
    assert done[: len(schema.AGGREGATE_NAMES)] == [f"refreshed {n}" for n in schema.AGGREGATE_NAMES]


@pytest.mark.integration
def test_timescale_mode_makes_hypertables_with_compression_and_policies(migrated_dsn: str, timescale: None) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        assert migrate.applied(conn)[0].mode == migrate.TIMESCALE
        schema.apply_policies(conn, load({}, db_retention_days=30))
        hypertables = {r[0] for r in conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables WHERE compression_enabled")}
        assert {t.name for t in tables.TABLES} <= hypertables
        caggs = {r[0] for r in conn.execute("SELECT view_name FROM timescaledb_information.continuous_aggregates")}
        assert set(schema.AGGREGATE_NAMES) <= caggs
        mine = ("SELECT proc_name, hypertable_name, config FROM timescaledb_information.jobs "
                "WHERE hypertable_schema = current_schema() ORDER BY 1, 2")
        jobs = conn.execute(mine).fetchall()
        schema.apply_policies(conn, load({}, db_retention_days=30))
        assert [j[:2] for j in conn.execute(mine).fetchall()] == [j[:2] for j in jobs]  # replaced, not added twice
    by_kind: dict[str, dict[str, dict]] = {}
    for proc, name, config in jobs:
        by_kind.setdefault(proc, {})[name] = config
    names = {t.name for t in tables.TABLES}
    assert by_kind["policy_compression"].keys() == by_kind["policy_retention"].keys() == names  # aggregates: kept
    assert all(c["compress_after"] == "24:00:00" for c in by_kind["policy_compression"].values())
    assert all(c["drop_after"] == "30 days" for c in by_kind["policy_retention"].values())
    refresh = by_kind["policy_refresh_continuous_aggregate"]
    assert refresh.keys() == set(schema.AGGREGATE_NAMES)
    for agg in schema.AGGREGATES:  # back to the raw retention; batches of a day where TimescaleDB batches (2.19+)
        assert refresh[agg.name]["start_offset"] == "30 days", refresh[agg.name]
        assert refresh[agg.name].get("buckets_per_batch", agg.buckets_per_day) == agg.buckets_per_day


@pytest.mark.integration
def test_the_db_commands_migrate_and_report(pg_schema: str, capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli import main

    assert main(["db", "migrate", "--dsn", pg_schema]) == 0
    first = capsys.readouterr().out
    assert main(["db", "migrate", "--dsn", pg_schema]) == 0
    again = capsys.readouterr().out
    assert main(["db", "status", "--dsn", pg_schema]) == 0
    status = capsys.readouterr().out
    assert main(["db", "refresh", "--dsn", pg_schema]) == 0
    versions = len(migrate.plan(migrate.PLAIN))
    assert "applied 0001_tables.sql" in first and f"0 applied, {versions} already applied" in again
    assert re.search(r"^mode: (plain PostgreSQL 15|TimescaleDB \d)", status, re.M)
    assert re.search(r"^\s+bbo\s+0$", status, re.M)
