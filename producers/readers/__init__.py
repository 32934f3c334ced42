"""Market-data file readers that yield :class:`topics.records.MboRecord` in file order.

``open_records(path, format=None, **opts)`` picks the reader (Databento DBN v1-v3 plain or zstd, Databento CSV,
LOBSTER message files); every reader has ``records()`` (also its iterator), ``iter_columns(max_records)`` for
batch producers, ``stats``, ``symbols`` and ``progress()``. Malformed input follows ``on_error``: ``"stop"``
raises a :class:`ReaderError` naming the file, the row or byte offset and the reason; ``"skip"`` counts it in
``stats.by_reason`` and logs it. See docs/readers.md.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from producers.readers.base import DEFAULT_BATCH, MboColumns, MboReader, OnError, ReaderStats
from producers.readers.dbn import DbnReader
from producers.readers.dbn_csv import DatabentoCsvReader
from producers.readers.detect import FORMATS, detect_format, open_records
from producers.readers.errors import (
    CorruptStreamError,
    MalformedRecordError,
    ReaderError,
    TruncatedFileError,
    UnrecoverableRecordError,
    UnsupportedFileError,
)
from producers.readers.lobster import LobsterReader


def iter_columns(
    path: str | Path, max_records: int = DEFAULT_BATCH, format: str | None = None, **opts: Any,
) -> Iterator[MboColumns]:
    """Shortcut: ``open_records(path, format, **opts).iter_columns(max_records)``."""
    return open_records(path, format, **opts).iter_columns(max_records)


__all__ = [
    "DEFAULT_BATCH", "FORMATS", "CorruptStreamError", "DatabentoCsvReader", "DbnReader", "LobsterReader",
    "MalformedRecordError", "MboColumns", "MboReader", "OnError", "ReaderError", "ReaderStats", "TruncatedFileError",
    "UnrecoverableRecordError", "UnsupportedFileError", "detect_format", "iter_columns", "open_records",
]
