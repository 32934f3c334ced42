"""Records -> rows -> binary COPY, without a database."""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Any

import pytest

from sinks import copybin, samples, tables
from sinks.errors import RowError
from topics.records import BboUpdate, BookAnomaly, FeatureBar, Level, Mbp10Snapshot, RegimeSignal

pytestmark = pytest.mark.unit


def test_every_table_has_its_key_among_its_columns_and_ts_first() -> None:
    for table in tables.TABLES:
        assert set(table.key) <= set(table.column_names), table.name
        assert table.columns[0].name == "ts" and table.columns[0].kind == "ts"
        assert "ts" in table.key, f"{table.name}: a hypertable unique key must include the time column"


def test_bbo_row_keeps_fixed_point_ints_and_ns_timestamps() -> None:
    rec = samples.bbo_updates(1)[0]
    row = tables.BBO.rows_of(rec)[0]
    assert row[0] == rec.ts_recv and row[4] == rec.ts_recv and row[5] == rec.ts_event
    assert row[tables.BBO.column_names.index("bid_px")] == rec.bid_px
    assert tables.BBO.key_of(row) == (rec.instrument_id, rec.ts_recv, 1, rec.ts_recv, rec.sequence)


def test_values_beyond_int64_are_row_errors_naming_the_field() -> None:
    rec = BboUpdate(publisher_id=1, instrument_id=1, ts_event=2**64 - 1, ts_recv=1, sequence=1, bid_px=None,
                    bid_sz=0, bid_ct=0, ask_px=None, ask_sz=0, ask_ct=0)
    with pytest.raises(RowError, match=r"\$\.ts_event"):
        tables.BBO.rows_of(rec)
    snap = Mbp10Snapshot(publisher_id=1, instrument_id=1, ts_event=1, ts_recv=1, sequence=1,
                         bids=[Level(1, 2**63, 1)], asks=[])
    with pytest.raises(RowError, match=r"\$\.bids\[0\]"):
        tables.MBP10.rows_of(snap)


def test_uint64_order_ids_wrap_to_signed_bigint() -> None:
    trade = samples.book_trades(1)[0]
    assert trade.order_id == 2**63
    assert tables.BOOK_TRADES.rows_of(trade)[0][9] == -(2**63)


def test_a_feature_bar_becomes_one_vector_in_the_order_of_its_names() -> None:
    bar = FeatureBar(instrument="1000", ts_event=10**18, interval_ns=10**9, values={"vol": None, "ret": 0.5})

    (row,) = tables.FEATURE_BARS.rows_of(bar)

    assert row == (10**18, "1000", 10**9, tables.feature_set_id(("vol", "ret")), (None, 0.5))
    assert isinstance(row, tables.FeatureRow) and row.names == ("vol", "ret")


def test_the_set_id_is_the_signed_first_half_of_the_md5_of_the_names_joined_by_line_breaks() -> None:
    assert tables.feature_set_id(["ret", "vol"]) == int.from_bytes(
        hashlib.md5(b"ret\nvol").digest()[:8], "big", signed=True)
    assert tables.feature_set_id(["ret", "vol"]) != tables.feature_set_id(["vol", "ret"])
    assert tables.feature_set_id([]) == -3162216497309240828  # md5 of the empty string: d41d8cd98f00b204...


def test_bars_of_one_name_set_share_one_names_tuple() -> None:
    names = [f"f_{i}" for i in range(1483)]
    bars = [FeatureBar(instrument=str(i), ts_event=10**18, interval_ns=10**9, values=dict.fromkeys(names, 1.0))
            for i in range(3)]

    rows = [tables.FEATURE_BARS.rows_of(bar)[0] for bar in bars]

    assert rows[0].names == tuple(names) and all(r.names is rows[0].names for r in rows)


def test_a_feature_name_with_a_line_break_is_a_row_error() -> None:
    bar = FeatureBar(instrument="1000", ts_event=10**18, interval_ns=10**9, values={"a\nb": 1.0})
    with pytest.raises(RowError, match=r"\$\.values"):
        tables.FEATURE_BARS.rows_of(bar)


def test_regime_signals_become_one_row() -> None:
    sig = RegimeSignal(instrument="1000", ts_event=10**18, interval_ns=10**9, kind="trend", state="up",
                       probability=0.9)
    assert tables.REGIME_SIGNALS.rows_of(sig) == [(10**18, "1000", 10**9, "trend", "up", 0.9, False)]


def sample_records(name: str) -> list[Any]:
    by_table: dict[str, list[Any]] = {
        "bbo": [*samples.bbo_updates(5), BboUpdate(publisher_id=1, instrument_id=1, ts_event=1, ts_recv=2,
                                                   sequence=3, bid_px=None, bid_sz=0, bid_ct=0, ask_px=5, ask_sz=1,
                                                   ask_ct=1)],
        "mbp10": samples.mbp10_snapshots(3),
        "book_trades": samples.book_trades(3),
        "exchange_trades": samples.exchange_trades(3),
        "exchange_quotes": samples.exchange_quotes(3),
        "book_anomalies": [BookAnomaly(publisher_id=1, instrument_id=1, ts_event=10**18, ts_recv=10**18 + 5,
                                       sequence=5, kind="gap", detail="seq 4 -> 6")],
        "feature_vectors": [FeatureBar(instrument="1000", ts_event=10**18, interval_ns=10**9,
                                       values={"ret": 0.5, "vol": None}),
                            FeatureBar(instrument="1000", ts_event=10**18, interval_ns=10**9, values={})],
        "regime_signals": [RegimeSignal(instrument="1000", ts_event=10**18, interval_ns=10**9, kind="trend",
                                        state="up", probability=0.9)],
    }
    return by_table[name]


@pytest.mark.parametrize("table", tables.TABLES, ids=lambda t: t.name)
def test_fast_encoder_equals_the_generic_one_for_items_and_rows(table: tables.TableSpec) -> None:
    fast, generic = copybin.encoder_for(table), copybin.generic_encoder(table.columns)
    for record in sample_records(table.name):
        for item in table.items_of(record):
            row = table.row(item)
            assert isinstance(row, tuple) and len(row) == len(table.columns)
            assert fast(item) == generic(row)
            assert fast(row) == generic(row)


def test_tables_with_fields_batch_the_records_themselves() -> None:
    rec = samples.bbo_updates(1)[0]
    assert tables.BBO.items_of(rec) == [rec]
    assert tables.BBO.rows_of(rec)[0] == tables.BBO.row(rec)
    assert tables.MBP10.fields is None


def test_bbo_row_bytes_follow_the_binary_copy_format() -> None:
    row = (946_684_800_000_001_000, 7, 1, 9, 5, 6, 100, 1, 2, None, 0, 0, True, False)
    data = copybin.encoder_for(tables.BBO)(row)
    assert data[:2] == struct.pack("!h", 14)
    assert data[2:14] == struct.pack("!iq", 8, 1)  # 1 microsecond after 2000-01-01
    null_at = 2 + 12 + 12 + 8 + 12 * 3 + 12 * 3  # count, ts, instrument, publisher(int4), 3 int8s, bid_px/sz/ct
    assert data[null_at:null_at + 4] == copybin.NULL
    stream = b"".join(copybin.chunks(tables.BBO, [row], chunk_bytes=1))
    assert stream.startswith(copybin.HEADER) and stream.endswith(copybin.TRAILER)


def test_int8_arrays_encode_dimensions_and_elements() -> None:
    enc = copybin.VALUE_ENCODERS["int8[]"]
    assert enc([]) == struct.pack("!iiii", 12, 0, 0, copybin.INT8_OID)
    assert enc([5]) == struct.pack("!iiiiiiiq", 32, 1, 0, copybin.INT8_OID, 1, 1, 8, 5)


def test_float8_arrays_encode_null_elements_as_length_minus_one() -> None:
    enc = copybin.VALUE_ENCODERS["float8[]"]
    assert enc([]) == struct.pack("!iiii", 12, 0, 0, copybin.FLOAT8_OID)
    assert enc([1.5]) == struct.pack("!iiiiiiid", 32, 1, 0, copybin.FLOAT8_OID, 1, 1, 8, 1.5)
    assert enc((None, 2.0, None)) == struct.pack("!iiiiiiiidi", 40, 1, 1, copybin.FLOAT8_OID, 3, 1, -1, 8, 2.0, -1)


@pytest.mark.parametrize("nulls_at", [(), (0,), (1482,), (0, 1, 2, 700, 1482), tuple(range(0, 1483, 3)),
                                      tuple(range(1483))])
def test_float8_arrays_equal_a_per_element_encoding(nulls_at: tuple[int, ...]) -> None:
    values: list[float | None] = [i * 0.5 - 300 for i in range(1483)]
    values[1] = math.inf
    values[2] = -math.inf
    for i in nulls_at:
        values[i] = None
    elements = b"".join(copybin.NULL if v is None else struct.pack("!id", 8, v) for v in values)
    body = struct.pack("!iiiii", 1, 1 if nulls_at else 0, copybin.FLOAT8_OID, len(values), 1) + elements

    assert copybin.VALUE_ENCODERS["float8[]"](values) == struct.pack("!i", len(body)) + body


def test_a_float8_array_element_that_is_not_a_number_is_an_error() -> None:
    with pytest.raises(struct.error):
        copybin.VALUE_ENCODERS["float8[]"]([1.0, "x"])
