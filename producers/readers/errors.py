"""Errors of the file readers: every one names the file, and a malformed record also names where and why."""

from __future__ import annotations

from pathlib import Path

from producers.errors import ProducerError


class ReaderError(ProducerError):
    """Base of every error raised while reading a market-data file; ``path`` is the file."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class UnsupportedFileError(ReaderError):
    """The file as a whole cannot be read: unknown format, wrong schema, missing columns, bad header.

    Raised whatever ``on_error`` says, because no record of such a file can be trusted.
    """


class CorruptStreamError(ReaderError):
    """The compressed stream cannot be decompressed past some point; raised whatever ``on_error`` says."""


class MalformedRecordError(ReaderError):
    """One row or record is malformed.

    ``location`` is ``"row N"`` (the file's line number, header included) for text files or ``"byte offset N"``
    for binary ones (in the decompressed stream for ``.zst``); ``reason`` names the field and what is wrong.
    Raised with ``on_error="stop"``; counted and logged with ``on_error="skip"``.
    """

    def __init__(self, path: str | Path, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(path, f"{location}: {reason}")


class TruncatedFileError(MalformedRecordError):
    """The file ends in the middle of a record (an interrupted download or copy)."""


class UnrecoverableRecordError(MalformedRecordError):
    """A binary record so damaged that the records after it cannot be found (e.g. an impossible length).

    Raised even with ``on_error="skip"``: skipping would mean guessing where the next record starts.
    """
