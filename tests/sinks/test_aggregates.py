"""The aggregates (materialized-view stand-ins in plain mode, continuous aggregates with TimescaleDB) equal the
same bars computed independently, in Python with exact decimals, from the rows that were stored."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from decimal import Decimal, localcontext
from typing import Any

import psycopg
import pytest

from sinks import samples, schema, tables
from sinks.pgstore import PgStore
from topics.settings import load

pytestmark = pytest.mark.integration

E9 = Decimal(10**9)


@pytest.fixture
def loaded_dsn(migrated_dsn: str) -> str:
    """A migrated schema holding a few minutes of BBO updates and trades, aggregates refreshed."""
    store = PgStore(migrated_dsn)
    store.write_batch({
        "bbo": [r for rec in samples.bbo_updates(6000, instruments=3, step_ns=37_000_000)
                for r in tables.BBO.rows_of(rec)],
        "book_trades": [r for rec in samples.book_trades(3000, step_ns=61_000_000)
                        for r in tables.BOOK_TRADES.rows_of(rec)],
        "exchange_trades": [r for rec in samples.exchange_trades(3000, step_ns=53_000_000)
                            for r in tables.EXCHANGE_TRADES.rows_of(rec)],
    })
    store.commit()
    store.close()
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        schema.refresh(conn, load({}))
    return migrated_dsn


def bucket_of(ts_ns: int, seconds: int) -> int:
    """Bucket start (epoch seconds) of a row whose ts is ``ts_ns`` truncated to microseconds."""
    return (ts_ns // 1000 // 1_000_000) // seconds * seconds


def group(rows: Iterable[tuple], key: Callable[[tuple], tuple]) -> dict[tuple, list[tuple]]:
    out: dict[tuple, list[tuple]] = defaultdict(list)
    for row in rows:
        out[key(row)].append(row)
    return out


def fetch(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


def expected_bbo_bars(dsn: str, seconds: int) -> dict[tuple, tuple]:
    rows = fetch(dsn, "SELECT ts_recv_ns, instrument_id, publisher_id, bid_px, ask_px, crossed FROM bbo "
                      "WHERE bid_px IS NOT NULL AND ask_px IS NOT NULL")
    bars = {}
    for key, grp in group(rows, lambda r: (bucket_of(r[0], seconds), r[1], r[2])).items():
        grp.sort()
        mids = [Decimal(r[3] + r[4]) / (2 * E9) for r in grp]
        spreads = [Decimal(r[4] - r[3]) for r in grp]
        with localcontext() as ctx:
            ctx.prec = 40
            avg = sum(spreads, Decimal(0)) / len(spreads) / E9
        bars[key] = (len(grp), mids[0], max(mids), min(mids), mids[-1], Decimal(grp[-1][3]) / E9,
                     Decimal(grp[-1][4]) / E9, avg, min(spreads) / E9, max(spreads) / E9, sum(r[5] for r in grp))
    return bars


def assert_bbo_bars_equal_a_direct_computation(dsn: str, view: str, seconds: int) -> None:
    """Every bar of ``view`` equals the bar computed in Python from the ``bbo`` rows, and no bar is missing."""
    got = fetch(dsn, f"SELECT extract(epoch FROM bucket)::bigint, instrument_id, publisher_id, updates, "
                     f"mid_open, mid_high, mid_low, mid_close, bid_close, ask_close, spread_avg, spread_min, "
                     f"spread_max, crossed_updates FROM {view}")
    expected = expected_bbo_bars(dsn, seconds)
    assert len(got) == len(expected) > 3
    for row in got:
        want = expected[tuple(row[:3])]
        assert tuple(row[3:10]) == want[:7]
        assert abs(row[10] - want[7]) < Decimal("1e-12")
        assert tuple(row[11:]) == want[8:]


@pytest.mark.parametrize(("view", "seconds"), [("bbo_1s", 1), ("bbo_1m", 60)])
def test_bbo_bars_equal_a_direct_computation(loaded_dsn: str, view: str, seconds: int) -> None:
    assert_bbo_bars_equal_a_direct_computation(loaded_dsn, view, seconds)


@pytest.mark.parametrize(("view", "source", "keys", "order", "size_scale", "where"), [
    ("book_ohlcv_1m", "book_trades", "instrument_id, publisher_id", "ts_recv_ns", 1, "NOT synthetic"),
    ("exchange_ohlcv_1m", "exchange_trades", "venue, symbol", "ts_recv_ns", E9, "true"),
])
def test_ohlcv_bars_equal_a_direct_computation(loaded_dsn: str, view: str, source: str, keys: str, order: str,
                                               size_scale: Decimal, where: str) -> None:
    rows = fetch(loaded_dsn, f"SELECT {order}, {keys}, price, size, extract(epoch FROM ts)::numeric "
                             f"FROM {source} WHERE {where}")
    expected = {}
    for key, grp in group(rows, lambda r: (int(r[5]) // 60 * 60, r[1], r[2])).items():
        grp.sort()
        prices = [Decimal(r[3]) / E9 for r in grp]
        volume = sum(r[4] for r in grp)
        with localcontext() as ctx:
            ctx.prec = 40
            vwap = sum(Decimal(r[3]) * r[4] for r in grp) / volume / E9
        expected[key] = (prices[0], max(prices), min(prices), prices[-1], Decimal(volume) / size_scale, len(grp), vwap)
    got = fetch(loaded_dsn, f"SELECT extract(epoch FROM bucket)::bigint, {keys}, open, high, low, close, volume, "
                            f"trades, vwap FROM {view}")
    assert len(got) == len(expected) > 1
    for row in got:
        want = expected[tuple(row[:3])]
        assert tuple(row[3:9]) == want[:6]
        assert abs(row[9] - want[6]) < Decimal("1e-12")


def test_synthetic_fills_are_left_out_of_the_ohlcv(loaded_dsn: str) -> None:
    (trades,) = fetch(loaded_dsn, "SELECT sum(trades) FROM book_ohlcv_1m")[0]
    (real,) = fetch(loaded_dsn, "SELECT count(*) FROM book_trades WHERE NOT synthetic")[0]
    (synthetic,) = fetch(loaded_dsn, "SELECT count(*) FROM book_trades WHERE synthetic")[0]
    assert trades == real and synthetic > 0


EMULATION = """
CREATE FUNCTION time_bucket(width interval, ts timestamptz) RETURNS timestamptz LANGUAGE sql IMMUTABLE
    AS $$ SELECT date_bin(width, ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') $$;
CREATE FUNCTION _first_step(state bigint[], v bigint, t bigint) RETURNS bigint[] LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN state IS NULL OR t < state[2] THEN ARRAY[v, t] ELSE state END $$;
CREATE FUNCTION _last_step(state bigint[], v bigint, t bigint) RETURNS bigint[] LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN state IS NULL OR t >= state[2] THEN ARRAY[v, t] ELSE state END $$;
CREATE FUNCTION _value(state bigint[]) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$ SELECT state[1] $$;
CREATE AGGREGATE first(bigint, bigint) (SFUNC = _first_step, STYPE = bigint[], FINALFUNC = _value);
CREATE AGGREGATE last(bigint, bigint) (SFUNC = _last_step, STYPE = bigint[], FINALFUNC = _value);
"""


def test_the_timescaledb_aggregates_select_the_same_rows_as_the_plain_stand_ins(loaded_dsn: str) -> None:
    """The continuous aggregates' SELECTs, taken from 0004_aggregates.timescale.sql, with TimescaleDB's
    time_bucket/first/last emulated in plain SQL in a scratch schema, return exactly the rows of the session's
    aggregates: the plain stand-ins (plain mode: the TimescaleDB SQL is checked without TimescaleDB) or the
    continuous aggregates themselves (TimescaleDB mode: the emulation is checked against the real functions)."""
    from sinks import migrate

    text = (migrate.MIGRATIONS_DIR / "0004_aggregates.timescale.sql").read_text()
    views = re.findall(r"CREATE MATERIALIZED VIEW (\w+) WITH \([^)]*\) AS\n(.*?)\nWITH NO DATA;", text, re.S)
    assert [name for name, _ in views] == list(schema.AGGREGATE_NAMES)
    with psycopg.connect(loaded_dsn, autocommit=True) as conn:
        base = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        conn.execute(f"CREATE SCHEMA {base}_ts")
        try:
            conn.execute(f"SET search_path = {base}_ts, {base}")
            conn.execute(EMULATION)
            for name, select in views:
                got = conn.execute(f"{select} EXCEPT ALL SELECT * FROM {base}.{name}").fetchall()
                missing = conn.execute(f"SELECT * FROM {base}.{name} EXCEPT ALL {select}").fetchall()
                assert got == [] and missing == [], name
        finally:
            conn.execute(f"DROP SCHEMA {base}_ts CASCADE")
