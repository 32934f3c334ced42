"""``open_records``: one entry point that picks the reader from the format name, the file's bytes or its name."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import zstandard

from producers.readers.base import MboReader
from producers.readers.dbn import DbnReader
from producers.readers.dbn_csv import DatabentoCsvReader
from producers.readers.errors import UnsupportedFileError
from producers.readers.lobster import NAME as LOBSTER_NAME
from producers.readers.lobster import LobsterReader
from producers.readers.source import ZSTD_MAGIC

logger = logging.getLogger(__name__)

READERS: dict[str, type[MboReader]] = {
    "dbn": DbnReader,
    "databento-csv": DatabentoCsvReader,
    "lobster": LobsterReader,
}
ALIASES = {"csv": "databento-csv"}
FORMATS = tuple(READERS)
_LOBSTER_ROW = re.compile(r"\d+(\.\d+)?,[1-7],-?\d+,\d+,-?\d+,-?1\s*$")
_SNIFF_BYTES = 4096


def open_records(path: str | Path, format: str | None = None, **opts: Any) -> MboReader:
    """The reader for ``path``: ``format`` is ``dbn``, ``databento-csv`` (or ``csv``) or ``lobster``; when it is
    ``None`` the file's first bytes decide (``DBN`` header, a CSV header naming ``ts_recv`` and ``order_id``, six
    numeric LOBSTER columns), then its name (``*.dbn``, ``*.dbn.zst``, ``*_message_*.csv``).

    ``opts`` go to the reader: ``on_error`` for all, ``price_format`` for CSV, ``instrument_id``,
    ``publisher_id``, ``date``, ``symbol``, ``tz`` for LOBSTER.
    """
    path = Path(path)
    name = ALIASES.get(format, format) if format else detect_format(path)
    if name not in READERS:
        raise UnsupportedFileError(path, f"unknown format {format!r} (one of {', '.join(FORMATS)})")
    logger.debug("reading %s as %s", path, name)
    return READERS[name](path, **opts)


def detect_format(path: Path) -> str:
    """The format name of ``path`` from its content, then its name; :class:`UnsupportedFileError` otherwise."""
    if not path.is_file():
        raise UnsupportedFileError(path, "no such file")
    head = _head(path)
    if head.startswith(b"DBN"):
        return "dbn"
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if "ts_recv" in first and "order_id" in first:
        return "databento-csv"
    if _LOBSTER_ROW.match(first) or LOBSTER_NAME.match(path.name):
        return "lobster"
    if path.name.endswith((".dbn", ".dbn.zst")):
        return "dbn"
    raise UnsupportedFileError(path, "cannot tell the format (not DBN, Databento CSV or LOBSTER): pass format=")


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES)
        if not head.startswith(ZSTD_MAGIC):
            return head
        f.seek(0)
        try:
            with zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True) as z:
                return z.read(_SNIFF_BYTES)
        except zstandard.ZstdError as e:
            raise UnsupportedFileError(path, f"not a valid zstd stream: {e}") from None
