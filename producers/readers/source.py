"""Opening an input file: plain or zstd (several frames allowed), as bytes or text, with stream errors named."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import zstandard

from producers.readers.errors import CorruptStreamError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _CheckedZstd(io.RawIOBase):
    """A zstd stream reader whose decompression errors become :class:`CorruptStreamError` naming the file."""

    def __init__(self, inner: IO[bytes], path: Path) -> None:
        super().__init__()
        self._inner = inner
        self._path = path
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(buffer))
        except zstandard.ZstdError as e:
            raise CorruptStreamError(
                self._path, f"the zstd stream is corrupt after {self._pos} decompressed bytes: {e}",
            ) from None
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n


@contextlib.contextmanager
def open_binary(path: Path) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """``(file, stream)``: the raw file (its ``tell`` is the progress) and the decompressed byte stream."""
    with path.open("rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic != ZSTD_MAGIC:
            yield f, f
            return
        with zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True, closefd=False) as z:
            yield f, io.BufferedReader(_CheckedZstd(z, path), buffer_size=1 << 20)


@contextlib.contextmanager
def open_text(path: Path) -> Iterator[tuple[IO[bytes], IO[str]]]:
    """``(file, text)``: the raw file (for progress) and its UTF-8 text (undecodable bytes replaced)."""
    with open_binary(path) as (raw, stream):
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
        try:
            yield raw, text
        finally:
            text.detach()  # the streams are closed by their own ``with``
