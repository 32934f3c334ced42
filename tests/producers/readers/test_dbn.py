"""The DBN reader on the shared Databento files: counts, histograms, versions, both decoding paths, damage."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from producers.readers import (
    CorruptStreamError,
    DbnReader,
    MalformedRecordError,
    TruncatedFileError,
    UnrecoverableRecordError,
    UnsupportedFileError,
    open_records,
)
from tests.producers.readers.conftest import (
    DBN_VERSIONS,
    ESH4,
    ESH4_SNAPSHOT,
    ESM4,
    LIVE,
    dbn,
    decompressed,
    new_decoder,
)
from topics.records import MboRecord

pytestmark = pytest.mark.unit

MBO_BYTES = 56


def _records_via_columns(reader: DbnReader, batch: int = 1000) -> list[MboRecord]:
    return [rec for cols in reader.iter_columns(batch) for rec in cols.records()]


def _reference(path: Path) -> list[MboRecord]:
    """The file decoded whole by databento_dbn, independently of the reader."""
    msgs = new_decoder().write_and_decode(decompressed(path))
    return [
        MboRecord(
            ts_recv=m.ts_recv, ts_event=m.ts_event, publisher_id=int(m.publisher_id), instrument_id=m.instrument_id,
            action=str(m.action), side=str(m.side), price=m.price, size=m.size,  # type: ignore[arg-type]
            channel_id=m.channel_id, order_id=m.order_id, flags=int(m.flags), ts_in_delta=m.ts_in_delta,
            sequence=m.sequence,
        )
        for m in msgs if isinstance(m, dbn.MBOMsg)
    ]


@pytest.mark.parametrize(
    ("name", "count", "actions", "sides"),
    [
        (ESH4, 68_792, {"A": 29_216, "C": 17_999, "M": 12_233, "T": 2_973, "F": 6_371},
         {"B": 36_358, "A": 32_398, "N": 36}),
        (ESH4_SNAPSHOT, 8_725, {"A": 8_725}, None),
        (ESM4, 13_796, {"R": 1, "A": 13_678, "C": 80, "M": 27, "T": 5, "F": 5}, None),
    ],
)
def test_counts_and_histograms_match_sources(
    shared_data: Path, name: str, count: int, actions: dict[str, int], sides: dict[str, int] | None,
) -> None:
    reader = open_records(shared_data / name)
    records = list(reader)
    assert len(records) == count == reader.stats.records
    assert Counter(r.action for r in records) == actions
    if sides is not None:
        assert Counter(r.side for r in records) == sides
    assert reader.stats.skipped == 0 and not reader.stats.ignored


def test_esh4_symbol_from_metadata(shared_data: Path) -> None:
    reader = DbnReader(shared_data / ESH4)
    first = next(iter(reader))
    assert first.instrument_id == 17077 and reader.symbols == {17077: "ESH4"}


def test_versions_1_2_3_give_the_same_two_records(shared_data: Path) -> None:
    decoded = [list(DbnReader(shared_data / name)) for name in DBN_VERSIONS]
    assert all(recs == decoded[0] for recs in decoded)
    first, second = decoded[0]
    assert (first.instrument_id, first.action, first.side, first.flags) == (5482, "C", "A", 128)
    assert (first.sequence, second.sequence) == (1_170_352, 1_170_353)
    assert second.action == "C" and second.side == "A"


@pytest.mark.parametrize("name", [*DBN_VERSIONS, ESH4, ESM4, LIVE])
def test_decoder_path_and_column_path_agree_with_databento(shared_data: Path, name: str) -> None:
    path = shared_data / name
    reader = DbnReader(path, chunk_bytes=4096)  # small chunks: records straddle chunk boundaries
    via_decoder = list(reader)
    stats = reader.stats.as_dict()
    via_columns = _records_via_columns(reader, batch=777)
    assert via_decoder == _reference(path)
    assert via_columns == via_decoder  # single-instrument files: batch order is file order
    assert reader.stats.as_dict() == stats


def test_mixed_live_file_skips_and_counts_other_record_types(shared_data: Path) -> None:
    reader = DbnReader(shared_data / LIVE)
    records = list(reader)
    assert len(records) == 5
    assert reader.stats.ignored == {
        "symbol_mapping": 20, "mbp_1": 2, "mbp_10": 2, "mbp_0": 2, "ohlcv_1s": 2, "ohlcv_1m": 2, "statistics": 9,
        "instrument_def": 2,
    }
    assert reader.symbols[183748] == "ESZ4"  # learned from the in-stream symbol mappings


def test_columns_are_split_by_instrument(tmp_path: Path, shared_data: Path) -> None:
    data = bytearray(decompressed(shared_data / DBN_VERSIONS[3]))  # v3, two records of instrument 5482
    start = len(data) - 2 * MBO_BYTES
    struct.pack_into("<I", data, start + MBO_BYTES + 4, 999)  # second record: instrument 999
    path = tmp_path / "two.dbn"
    path.write_bytes(bytes(data))
    batches = list(DbnReader(path).iter_columns())
    assert [(b.instrument_id, len(b)) for b in batches] == [(5482, 1), (999, 1)]
    assert batches[0].symbol == "ESH1" and batches[1].symbol is None


@pytest.mark.parametrize(
    "name", ["databento/dbn/test_data.mbp-10.dbn", "databento/databento-python/XNAS.ITCH/test_data.trades.dbn.zst"],
)
def test_other_schema_is_refused(shared_data: Path, name: str) -> None:
    with pytest.raises(UnsupportedFileError, match=r"schema is .*, not mbo"):
        list(DbnReader(shared_data / name))


def test_not_dbn_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.dbn"
    path.write_bytes(b"hello, world" * 10)
    with pytest.raises(UnsupportedFileError, match="not a DBN file"):
        list(DbnReader(path))


def _damaged(tmp_path: Path, shared_data: Path, edit: str) -> tuple[Path, int]:
    """The v3 two-record file with its second record damaged; returns the path and that record's offset."""
    data = bytearray(decompressed(shared_data / DBN_VERSIONS[3]))
    second = len(data) - MBO_BYTES
    if edit == "truncate":
        data = data[:-10]
    elif edit == "action":
        data[second + 38] = ord("Z")
    elif edit == "length":
        data[second] = 2
    path = tmp_path / f"{edit}.dbn"
    path.write_bytes(bytes(data))
    return path, second


@pytest.mark.parametrize("path_kind", ["records", "columns"])
def test_truncated_file_names_offset_and_reason(tmp_path: Path, shared_data: Path, path_kind: str) -> None:
    path, offset = _damaged(tmp_path, shared_data, "truncate")
    reader = DbnReader(path)
    read: Any = list if path_kind == "records" else _records_via_columns
    with pytest.raises(TruncatedFileError) as err:
        read(reader)
    assert err.value.path == str(path) and err.value.location == f"byte offset {offset}"
    assert "ends inside a record (46 of 56 bytes)" in str(err.value)
    skipping = DbnReader(path, on_error="skip")
    assert len(read(skipping)) == 1
    assert skipping.stats.skipped == 1 and skipping.stats.by_reason == {"truncated": 1}


@pytest.mark.parametrize("path_kind", ["records", "columns"])
def test_bad_action_stops_or_is_skipped(tmp_path: Path, shared_data: Path, path_kind: str) -> None:
    path, offset = _damaged(tmp_path, shared_data, "action")
    read: Any = list if path_kind == "records" else _records_via_columns
    with pytest.raises(MalformedRecordError, match=rf"byte offset {offset}: action: 'Z' is not one of"):
        read(DbnReader(path))
    skipping = DbnReader(path, on_error="skip")
    assert len(read(skipping)) == 1
    assert skipping.stats.by_reason == {"bad action": 1}


@pytest.mark.parametrize("path_kind", ["records", "columns"])
def test_impossible_length_is_unrecoverable_even_when_skipping(
    tmp_path: Path, shared_data: Path, path_kind: str,
) -> None:
    path, offset = _damaged(tmp_path, shared_data, "length")
    reader = DbnReader(path, on_error="skip")
    got: list[MboRecord] = []
    with pytest.raises(UnrecoverableRecordError, match=rf"byte offset {offset}: record length 8 bytes"):
        if path_kind == "records":
            got.extend(reader)
        else:
            got.extend(_records_via_columns(reader))
    if path_kind == "records":
        assert len(got) == 1  # the good record before the damage was delivered first


def test_progress_reaches_the_end(shared_data: Path) -> None:
    reader = DbnReader(shared_data / ESH4)
    assert reader.progress() is None
    for _ in reader.iter_columns(5000):
        pass
    assert reader.progress() == 1.0


@pytest.mark.parametrize("name", [ESH4, "databento/blockhouse_arl/mbo.csv"])
def test_corrupt_zstd_stream_is_named(tmp_path: Path, shared_data: Path, name: str) -> None:
    import zstandard

    raw = decompressed(shared_data / name)
    packed = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(raw))
    packed[len(packed) // 2] ^= 0xFF
    path = tmp_path / "corrupt.zst"
    path.write_bytes(bytes(packed))
    with pytest.raises(CorruptStreamError, match=r"corrupt.zst: the zstd stream is corrupt after \d+ decompressed"):
        list(open_records(path, on_error="skip"))
