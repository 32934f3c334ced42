"""Feature bars as arrays (migrations 0005, 0006) on a real PostgreSQL: the float8[] COPY encoding, set ids alike
in Python and SQL, bars stored through the sink's store read back through the view ``feature_bars``, and the
migration of existing long rows (in TimescaleDB mode also from a compressed hypertable with policies)."""

from __future__ import annotations

import math
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ops.stack.testing import LocalStack
from sinks import copybin, migrate, schema, tables
from sinks.errors import StoreUnavailable
from sinks.pgstore import PgStore
from sinks.tables import Column
from tests.sinks.conftest import timescaledb_allowed
from topics.records import FeatureBar
from topics.settings import load

pytestmark = pytest.mark.integration

START_NS = 1_732_500_000_000_000_000  # 2024-11-25T02:00:00Z
NAMES = tuple(f"{family}_{w}" for family in ("mid", "ret", "vol", "rsi", "leadlag_p3") for w in (1, 5, 10, 20, 50))


def bars(names: tuple[str, ...], count: int, instrument: str = "1000", start_ns: int = START_NS) -> list[FeatureBar]:
    """``count`` 1 s bars; every fifth feature warms up over the first two bars."""
    return [FeatureBar(instrument=instrument, ts_event=start_ns + i * 10**9, interval_ns=10**9,
                       values={n: None if i < 2 and j % 5 == 0 else (i + 1) * (j - 3.25) / 7
                               for j, n in enumerate(names)}) for i in range(count)]


def long_form(records: list[FeatureBar]) -> list[tuple[Any, ...]]:
    """What the view returns for ``records``: (ts µs since the epoch, instrument, interval_ns, name, value)."""
    return sorted((r.ts_event // 1000, r.instrument, r.interval_ns, name, value)
                  for r in records for name, value in r.values.items())


def view_rows(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    rows = conn.execute("SELECT (extract(epoch FROM ts) * 1000000)::bigint, instrument, interval_ns, name, value "
                        "FROM feature_bars").fetchall()
    return sorted(rows, key=lambda r: r[:4])


def store_bars(dsn: str, records: list[FeatureBar]) -> dict[str, int]:
    store = PgStore(dsn)
    try:
        inserted = store.write_batch({"feature_vectors": [i for r in records
                                                          for i in tables.FEATURE_BARS.items_of(r)]})
        store.commit()
    finally:
        store.close()
    return inserted


def test_float8_arrays_round_trip_through_a_real_binary_copy(migrated_dsn: str) -> None:
    values: list[list[float | None]] = [
        [], [None], [1.5, None, -2.25, None],
        [math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1.7976931348623157e308],
        [None if i % 3 == 0 else i / 7 for i in range(1483)],
    ]
    encode = copybin.generic_encoder([Column("id", "int4"), Column("v", "float8[]")])
    stream = copybin.HEADER + b"".join(encode((i, v)) for i, v in enumerate(values)) + copybin.TRAILER

    with psycopg.connect(migrated_dsn) as conn:
        conn.execute("CREATE TEMP TABLE arrays (id integer, v double precision[])")
        with conn.cursor() as cur, cur.copy("COPY arrays (id, v) FROM STDIN (FORMAT binary)") as copy:
            copy.write(stream)
        got = [v for _, v in conn.execute("SELECT id, v FROM arrays ORDER BY id").fetchall()]
        text = conn.execute("SELECT v::text FROM arrays WHERE id = 3").fetchone()

    assert len(got) == len(values)
    for stored, sent in zip(got, values, strict=True):
        assert [repr(x) for x in stored] == [repr(x) for x in sent]  # repr: NaN equals NaN, -0.0 differs from 0.0
    assert text == ("{NaN,Infinity,-Infinity,0,-0,5e-324,1.7976931348623157e+308}",)


@pytest.mark.parametrize("names", [(), ("mid",), ("ret", "vol"), ("vol", "ret"), ("prix_moyen", "écart", "日本"),
                                   tuple(f"feature_{i}" for i in range(1483))], ids=lambda n: f"{len(n)} names")
def test_set_ids_agree_between_python_and_sql(migrated_dsn: str, names: tuple[str, ...]) -> None:
    with psycopg.connect(migrated_dsn) as conn:
        row = conn.execute("SELECT feature_set_id(%s::text[])", (list(names),)).fetchone()

    assert row == (tables.feature_set_id(names),)


def test_stored_bars_read_back_through_the_view_one_row_per_feature(migrated_dsn: str) -> None:
    records = bars(NAMES, 4) + bars(NAMES, 3, instrument="binance:BTCUSDT")

    inserted = store_bars(migrated_dsn, records)

    with psycopg.connect(migrated_dsn) as conn:
        assert view_rows(conn) == long_form(records)
        counts = conn.execute("SELECT (SELECT count(*) FROM feature_vectors), (SELECT count(*) FROM feature_sets)"
                              ).fetchone()
    assert inserted == {"feature_vectors": 7} and counts == (7, 1)


def test_vectors_are_stored_out_of_line_without_compression_in_the_table_and_its_chunks(migrated_dsn: str) -> None:
    store_bars(migrated_dsn, bars(NAMES, 2))

    with psycopg.connect(migrated_dsn) as conn:
        storage = conn.execute(  # the table, and in TimescaleDB mode the chunks it made for the rows
            "SELECT DISTINCT a.attstorage FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE a.attname = 'vals' AND (c.oid = 'feature_vectors'::regclass OR c.oid IN ("
            "  SELECT inhrelid FROM pg_inherits WHERE inhparent = 'feature_vectors'::regclass))").fetchall()

    assert storage == [("e",)]


def test_one_feature_reads_by_its_position_without_unnesting(migrated_dsn: str) -> None:
    records = bars(NAMES, 5)
    store_bars(migrated_dsn, records)
    want = [r.values["vol_10"] for r in records]

    with psycopg.connect(migrated_dsn) as conn:
        by_position = conn.execute(
            "SELECT v.vals[f.i] FROM feature_vectors v JOIN (SELECT set_id, array_position(names, 'vol_10') AS i "
            "FROM feature_sets) f USING (set_id) ORDER BY v.ts").fetchall()
        by_function = conn.execute("SELECT feature_value(s.names, v.vals, 'vol_10') FROM feature_vectors v "
                                   "JOIN feature_sets s USING (set_id) ORDER BY v.ts").fetchall()
        absent = conn.execute("SELECT feature_value(s.names, v.vals, 'no_such') FROM feature_vectors v "
                              "JOIN feature_sets s USING (set_id) LIMIT 1").fetchone()
    assert [r[0] for r in by_position] == [r[0] for r in by_function] == want
    assert absent == (None,)


def test_replayed_bars_insert_nothing_and_two_name_sets_coexist(migrated_dsn: str) -> None:
    other_names = (*NAMES[::-1], "spread")
    first, other = bars(NAMES, 3), bars(other_names, 3, start_ns=START_NS + 3 * 10**9)
    store_bars(migrated_dsn, first)

    replay = store_bars(migrated_dsn, first + other)

    with psycopg.connect(migrated_dsn) as conn:
        assert view_rows(conn) == long_form(first + other)
        sets = conn.execute("SELECT set_id, names FROM feature_sets ORDER BY first_seen, set_id").fetchall()
    assert replay == {"feature_vectors": 3}
    assert sorted(sets) == sorted([(tables.feature_set_id(NAMES), list(NAMES)),
                                   (tables.feature_set_id(other_names), list(other_names))])


def test_a_batch_retried_on_a_new_connection_after_a_lost_one_stores_its_set_and_vectors(migrated_dsn: str) -> None:
    items = [i for r in bars(NAMES, 3) for i in tables.FEATURE_BARS.items_of(r)]
    lost = PgStore(migrated_dsn)
    lost.write_batch({"feature_vectors": items})  # the set is inserted, not committed
    with psycopg.connect(migrated_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (lost.conn.info.backend_pid,))
    with pytest.raises(StoreUnavailable):
        lost.commit()
    lost.close()

    retry = PgStore(migrated_dsn)  # what the writer does: a new store, the same batch
    try:
        inserted = retry.write_batch({"feature_vectors": items})
        retry.commit()
    finally:
        retry.close()

    with psycopg.connect(migrated_dsn) as conn:
        assert view_rows(conn) == long_form(bars(NAMES, 3))
    assert inserted == {"feature_vectors": 3}


def test_a_set_id_that_does_not_hash_its_names_is_refused(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO feature_sets (set_id, names) VALUES (1, '{a,b}')")


# -- migration 0005 over existing long rows ----------------------------------------------------------------------


def migrations_up_to(version: int, folder: Path) -> Path:
    folder.mkdir()
    for path in migrate.MIGRATIONS_DIR.glob("*.sql"):
        if int(path.name[:4]) <= version:
            shutil.copy(path, folder / path.name)
    return folder


def insert_long_rows(conn: psycopg.Connection, records: list[FeatureBar]) -> None:
    rows = [(datetime.fromtimestamp(ts_us // 10**6, UTC).replace(microsecond=ts_us % 10**6), inst, iv, name, value)
            for ts_us, inst, iv, name, value in long_form(records)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO feature_bars (ts, instrument, interval_ns, name, value) "
                        "VALUES (%s, %s, %s, %s, %s)", rows)


def compress_with_policies(conn: psycopg.Connection) -> int:
    """TimescaleDB: the long hypertable with compressed chunks and its compression and retention jobs, as a
    database migrated before 0005 has it; returns how many jobs it has."""
    conn.execute("SELECT add_compression_policy('feature_bars', INTERVAL '24 hours')")
    conn.execute("SELECT add_retention_policy('feature_bars', INTERVAL '3650 days')")
    conn.execute("SELECT compress_chunk(c) FROM show_chunks('feature_bars') c")
    return len(jobs_of(conn, "feature_bars"))


def jobs_of(conn: psycopg.Connection, table: str) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT job_id, proc_name FROM timescaledb_information.jobs "
                        "WHERE hypertable_schema = current_schema() AND hypertable_name = %s", (table,)).fetchall()


def test_migration_0005_moves_long_rows_into_vectors_and_the_view_returns_them(
        stack: LocalStack, pg_schema: str, tmp_path: Path) -> None:
    short = tuple(n for n in NAMES if not n.startswith("leadlag"))  # an older feature set, fewer names
    records = (bars(NAMES, 4) + bars(NAMES, 4, instrument="binance:BTCUSDT")
               + bars(short, 2, instrument="2000", start_ns=START_NS - 86_400 * 10**9))
    records += [FeatureBar(instrument="1000", ts_event=START_NS + 10 * 60 * 10**9, interval_ns=60 * 10**9,
                           values={n: 0.5 for n in NAMES})]
    with psycopg.connect(pg_schema, autocommit=True) as conn:
        old = migrate.migrate(conn, migrations_up_to(4, tmp_path / "old"), timescaledb=timescaledb_allowed(stack))
        with conn.transaction():
            insert_long_rows(conn, records)
        jobs = compress_with_policies(conn) if old.mode == migrate.TIMESCALE else 0

        report = migrate.migrate(conn)

        assert [m.version for m in report.applied] == [5, 6]  # the vectors, then their time layout
        assert conn.execute("SELECT relkind FROM pg_class WHERE oid = 'feature_bars'::regclass").fetchone() == ("v",)
        assert view_rows(conn) == long_form(records)
        vectors = conn.execute("SELECT instrument, interval_ns, set_id, vals FROM feature_vectors "
                               "ORDER BY instrument, interval_ns, ts").fetchall()
        sets = dict(conn.execute("SELECT set_id, names FROM feature_sets").fetchall())
        if old.mode == migrate.TIMESCALE:
            assert jobs == 2 and jobs_of(conn, "feature_bars") == []  # dropped with the hypertable
            assert conn.execute("SELECT count(*) FROM ONLY feature_vectors").fetchone() == (0,)  # all in chunks
            schema.apply_policies(conn, load({}, db_retention_days=30))
            assert sorted(p for _, p in jobs_of(conn, "feature_vectors")) == ["policy_compression",
                                                                                "policy_retention"]
    by_name = {tuple(sorted(NAMES)), tuple(sorted(short))}
    assert sets == {tables.feature_set_id(n): list(n) for n in by_name}
    assert len(vectors) == len(records)
    for (instrument, interval_ns, set_id, vals), rec in zip(vectors, sorted(
            records, key=lambda r: (r.instrument, r.interval_ns, r.ts_event)), strict=True):
        assert (instrument, interval_ns) == (rec.instrument, rec.interval_ns)
        assert vals == [rec.values[n] for n in sets[set_id]]  # names in byte order, values in the same order


def test_migration_0005_over_an_empty_long_table_and_a_new_bar_afterwards(migrated_dsn: str) -> None:
    records = bars(NAMES, 2)

    store_bars(migrated_dsn, records)

    with psycopg.connect(migrated_dsn) as conn:
        assert view_rows(conn) == long_form(records)
        assert conn.execute("SELECT version FROM schema_migrations ORDER BY version DESC LIMIT 1").fetchone() == (6,)
