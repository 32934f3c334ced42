"""open_records picks the reader from the format, the content or the name; iter_columns shortcut."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.readers import (
    DatabentoCsvReader,
    DbnReader,
    LobsterReader,
    UnsupportedFileError,
    detect_format,
    iter_columns,
    open_records,
)
from tests.producers.readers.conftest import AAPL_MESSAGES, ARL_CSV, DBN_VERSIONS, ESH4

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "kind"),
    [(ESH4, DbnReader), (DBN_VERSIONS[3], DbnReader), (ARL_CSV, DatabentoCsvReader), (AAPL_MESSAGES, LobsterReader)],
)
def test_detection_by_content(shared_data: Path, name: str, kind: type) -> None:
    assert isinstance(open_records(shared_data / name), kind)


def test_detection_of_a_renamed_dbn(tmp_path: Path, shared_data: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes((shared_data / DBN_VERSIONS[3]).read_bytes())
    assert detect_format(path) == "dbn"


def test_format_given_and_alias(shared_data: Path) -> None:
    assert isinstance(open_records(shared_data / ARL_CSV, "csv"), DatabentoCsvReader)
    with pytest.raises(UnsupportedFileError, match="unknown format 'parquet'"):
        open_records(shared_data / ARL_CSV, "parquet")


def test_unknown_content_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(UnsupportedFileError, match="cannot tell the format"):
        open_records(path)
    with pytest.raises(UnsupportedFileError, match="no such file"):
        open_records(tmp_path / "absent.dbn")


def test_reader_options_pass_through(shared_data: Path) -> None:
    reader = open_records(shared_data / ARL_CSV, on_error="skip", price_format="decimal")
    assert isinstance(reader, DatabentoCsvReader) and reader.on_error == "skip"
    with pytest.raises(ValueError, match="on_error"):
        open_records(shared_data / ARL_CSV, on_error="ignore")


@pytest.mark.parametrize("name", [ESH4, ARL_CSV, AAPL_MESSAGES])
def test_iter_columns_matches_records(shared_data: Path, name: str) -> None:
    path = shared_data / name
    batches = list(iter_columns(path, 5000))
    assert all(0 < len(b) <= 5000 for b in batches)
    assert [r for b in batches for r in b.records()] == list(open_records(path))
    frame = batches[0].to_frame(ts_sent=5)
    assert frame.column_error() is None and frame.ts_sent == 5 and len(frame) == len(batches[0])
