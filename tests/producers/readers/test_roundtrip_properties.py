"""Property tests: any MBO records, encoded by databento_dbn as DBN and as CSV, read back exactly by both DBN
paths and the CSV reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.mbp10 import format_price, format_ts
from producers.readers import DatabentoCsvReader, DbnReader
from producers.readers.text import parse_decimal_price, parse_timestamp
from tests.producers.readers.conftest import dbn, transcode_csv
from topics.records import MboRecord

pytestmark = pytest.mark.unit

U32, U64, I64 = 2**32 - 1, 2**64 - 1, 2**63 - 1
PUBLISHERS = (1, 2, 57)  # publisher ids databento_dbn knows (GLBX, XNAS, IFEU)

records = st.builds(
    MboRecord,
    # 0 and UNDEF_TIMESTAMP are both an empty field in Databento's pretty CSV (read back as UNDEF_TIMESTAMP)
    ts_recv=st.integers(1, 2**64 - 2), ts_event=st.integers(1, 2**64 - 2), publisher_id=st.sampled_from(PUBLISHERS),
    instrument_id=st.integers(0, U32), action=st.sampled_from("ACMRTFN"), side=st.sampled_from("ABN"),
    price=st.integers(-I64, I64),  # not INT64_MIN: databento_dbn's CSV encoder writes "--9223372036.-854775808"
    size=st.integers(0, U32), channel_id=st.integers(0, 255),
    order_id=st.integers(0, U64), flags=st.integers(0, 255), ts_in_delta=st.integers(-(2**31), 2**31 - 1),
    sequence=st.integers(0, U32),
)


def _dbn_bytes(recs: list[MboRecord]) -> bytes:
    metadata: Any = dbn.Metadata(
        dataset="XNAS.ITCH", schema=dbn.Schema.MBO, start=0, stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID, symbols=[], partial=[], not_found=[], mappings=[], end=None,
    )
    body = b"".join(
        bytes(dbn.MBOMsg(
            publisher_id=r.publisher_id, instrument_id=r.instrument_id, ts_event=r.ts_event, order_id=r.order_id,
            price=r.price, size=r.size, action=dbn.Action.from_str(r.action), side=dbn.Side.from_str(r.side),
            ts_recv=r.ts_recv, ts_in_delta=r.ts_in_delta, sequence=r.sequence, flags=r.flags,
            channel_id=r.channel_id,
        ))
        for r in recs
    )
    return bytes(metadata.encode()) + body


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recs=st.lists(records, min_size=1, max_size=30), batch=st.integers(1, 40))
def test_dbn_and_csv_roundtrip(tmp_path: Path, recs: list[MboRecord], batch: int) -> None:
    data = _dbn_bytes(recs)
    path = tmp_path / "x.dbn"
    path.write_bytes(data)
    reader = DbnReader(path, chunk_bytes=97)  # records straddle chunks
    assert list(reader) == recs
    by_instrument: dict[tuple[int, int], list[MboRecord]] = {}
    for r in recs:
        by_instrument.setdefault((r.publisher_id, r.instrument_id), []).append(r)
    got: dict[tuple[int, int], list[MboRecord]] = {}
    for cols in reader.iter_columns(batch):
        got.setdefault((cols.publisher_id, cols.instrument_id), []).extend(cols.records())
    assert got == by_instrument
    for pretty in (True, False):
        csv_path = tmp_path / "x.csv"
        csv_path.write_text(transcode_csv(data, pretty=pretty))
        assert list(DatabentoCsvReader(csv_path)) == recs


@given(st.integers(-(2**63), 2**63 - 2))
def test_price_text_roundtrip(value: int) -> None:
    assert parse_decimal_price(format_price(value)) == value


@given(st.integers(0, 2**64 - 1))
def test_timestamp_text_roundtrip(value: int) -> None:
    assert parse_timestamp(format_ts(value), "ts") == value  # UNDEF_TIMESTAMP <-> empty
