"""The Databento CSV reader: the ARL file, agreement with the DBN reader through Databento's own CSV encoder,
malformed rows in both error modes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import zstandard

from producers.readers import (
    DatabentoCsvReader,
    DbnReader,
    MalformedRecordError,
    UnsupportedFileError,
    open_records,
)
from tests.producers.readers.conftest import (
    ARL_CSV,
    DBN_VERSIONS,
    ESH4,
    ESM4,
    LIVE,
    dbn,
    decompressed,
    transcode_csv,
)
from topics.records import UNDEF_PRICE, MboRecord

pytestmark = pytest.mark.unit

HEADER = (
    "ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,price,size,channel_id,order_id,flags,"
    "ts_in_delta,sequence,symbol"
)
GOOD = (
    "2025-07-17T08:05:03.360842448Z,2025-07-17T08:05:03.360677248Z,160,2,1108,A,B,5.510000000,100,0,817593,130,"
    "165200,851012,ARL"
)


def test_arl_counts_match_sources(shared_data: Path) -> None:
    reader = open_records(shared_data / ARL_CSV)
    assert isinstance(reader, DatabentoCsvReader)
    records = list(reader)
    assert len(records) == 5_886
    assert Counter(r.action for r in records) == {"R": 1, "A": 2_915, "C": 2_913, "T": 46, "F": 11}
    assert Counter(r.side for r in records) == {"A": 5_120, "B": 730, "N": 36}
    assert Counter(r.flags for r in records) == {130: 3_858, 0: 1_670, 128: 357, 8: 1}
    assert reader.symbols == {1108: "ARL"}
    first, second = records[0], records[1]
    assert (first.action, first.side, first.price, first.size, first.flags) == ("R", "N", UNDEF_PRICE, 0, 8)
    assert first.ts_recv == 1_752_735_909_035_793_433 and first.ts_event == 1_752_735_909_035_627_674
    assert (second.price, second.order_id, second.ts_in_delta, second.sequence) == (5_510_000_000, 817593, 165200,
                                                                                    851012)


@pytest.mark.parametrize("pretty", [True, False], ids=["pretty", "raw"])
@pytest.mark.parametrize(
    "name", [DBN_VERSIONS[0], DBN_VERSIONS[3], ESM4, pytest.param(ESH4, marks=pytest.mark.slow), LIVE],
)
def test_csv_of_databento_encoder_reads_like_the_dbn(
    tmp_path: Path, shared_data: Path, name: str, pretty: bool,
) -> None:
    dbn_path = shared_data / name
    csv_path = tmp_path / "mbo.csv"
    schema = dbn.Schema.MBO if name == LIVE else None  # the live capture mixes schemas
    csv_path.write_text(transcode_csv(decompressed(dbn_path), pretty=pretty, schema=schema))
    from_dbn = list(DbnReader(dbn_path))
    from_csv = list(DatabentoCsvReader(csv_path))
    assert from_csv == from_dbn


def test_zstd_compressed_csv(tmp_path: Path, shared_data: Path) -> None:
    raw = (shared_data / ARL_CSV).read_bytes()
    path = tmp_path / "mbo.csv.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(raw[:100_000]) + zstandard.ZstdCompressor().compress(
        raw[100_000:]))  # two frames, split inside a row
    assert list(open_records(path)) == list(open_records(shared_data / ARL_CSV))


def _write(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


BAD_ROWS = [
    (GOOD.replace("5.510000000", "5.51x"), "bad price", "price: '5.51x' is not a decimal number"),
    (GOOD.replace("5.510000000", "5.5100000001"), "bad price", "has more than 9 decimal places"),
    (GOOD.replace(",A,B,", ",Q,B,"), "bad action", "action: 'Q' is not one of ACFMNRT"),
    (GOOD.replace(",A,B,", ",A,X,"), "bad side", "side: 'X' is not one of ABN"),
    (GOOD.replace(",100,0,", ",-1,0,"), "bad size", "size: -1 is outside"),
    (GOOD.replace("2025-07-17T08:05:03.360842448Z", "yesterday"), "bad ts_recv", "ts_recv: 'yesterday' is not"),
    (GOOD.replace(",130,165200,", ",300,165200,"), "bad flags", "flags: 300 is outside [0, 255]"),
    (GOOD.rsplit(",", 1)[0], "column count", "expected 15 columns, got 14"),
]


@pytest.mark.parametrize(("row", "category", "reason"), BAD_ROWS, ids=[c for _, c, _ in BAD_ROWS])
def test_malformed_row_stop_names_file_row_reason(tmp_path: Path, row: str, category: str, reason: str) -> None:
    path = _write(tmp_path, GOOD, row, GOOD)
    reader = DatabentoCsvReader(path)
    got: list[MboRecord] = []
    with pytest.raises(MalformedRecordError) as err:
        got.extend(reader)
    assert len(got) == 1
    assert err.value.path == str(path) and err.value.location == "row 3" and reason in err.value.reason
    assert str(err.value).startswith(f"{path}: row 3: ")


@pytest.mark.parametrize(("row", "category", "reason"), BAD_ROWS, ids=[c for _, c, _ in BAD_ROWS])
def test_malformed_row_skip_counts_and_continues(
    tmp_path: Path, row: str, category: str, reason: str, caplog: pytest.LogCaptureFixture,
) -> None:
    path = _write(tmp_path, GOOD, row, GOOD)
    reader = DatabentoCsvReader(path, on_error="skip")
    assert len(list(reader)) == 2
    assert reader.stats.skipped == 1 and reader.stats.by_reason == {category: 1}
    assert f"{path}: row 3: " in caplog.text and reason in caplog.text


def test_missing_columns_refuse_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD, header=HEADER.replace("order_id", "oid"))
    with pytest.raises(UnsupportedFileError, match="lacks order_id"):
        list(DatabentoCsvReader(path, on_error="skip"))


def test_integer_timestamps_and_fixed_prices(tmp_path: Path) -> None:
    row = "1752739503360842448,1752739503360677248,160,2,1108,A,B,5510000000,100,0,817593,130,165200,851012,ARL"
    raw = list(DatabentoCsvReader(_write(tmp_path, row)))
    pretty = list(DatabentoCsvReader(_write(tmp_path, GOOD)))
    assert raw == pretty


def test_price_format_is_decided_on_the_first_price(tmp_path: Path) -> None:
    fixed = "1752739503360842448,1752739503360677248,160,2,1108,A,B,5510000000,100,0,817593,130,165200,851012,ARL"
    reader = DatabentoCsvReader(_write(tmp_path, fixed, GOOD), on_error="skip")
    assert len(list(reader)) == 1 and reader.stats.by_reason == {"bad price": 1}


def test_other_rtype_rows_are_ignored_and_columns_found_by_name(tmp_path: Path) -> None:
    header = "," + HEADER  # a pandas index column in front
    mbp = "0,2025-07-17T08:05:03.360842448Z,2025-07-17T08:05:03.360677248Z,10,2,1108,A,B,5.51,100,0,1,130,0,1,ARL"
    reader = DatabentoCsvReader(_write(tmp_path, "7," + GOOD, mbp, header=header))
    assert len(list(reader)) == 1 and reader.stats.ignored == {"rtype 10": 1}


def test_iso_timestamps_with_fewer_digits_and_offsets(tmp_path: Path) -> None:
    row = GOOD.replace("2025-07-17T08:05:03.360842448Z", "2025-07-17T10:05:03.36+02:00")
    (rec,) = DatabentoCsvReader(_write(tmp_path, row))
    assert rec.ts_recv == 1_752_739_503_360_000_000


def test_empty_timestamp_is_undefined(tmp_path: Path) -> None:
    (rec,) = DatabentoCsvReader(_write(tmp_path, GOOD.replace("2025-07-17T08:05:03.360842448Z", "", 1)))
    assert rec.ts_recv == 2**64 - 1  # UNDEF_TIMESTAMP: Databento's encoder writes it (and 0) as an empty field
