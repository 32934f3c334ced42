"""Replay input as chunks of records in file order, built for speed.

DBN files (``.dbn``, ``.dbn.zst``, any DBN version: the MBO record layout is the same in v1, v2 and v3) are read
as raw bytes: a chunk is a memoryview over consecutive 56-byte MBO records, and columns become Python lists only
frame by frame (:class:`RawMboBlock`), with no per-record Python object. Other formats (Databento CSV) go through
:func:`producers.readers.open_records` and are batched into :class:`~producers.framing.ColumnBlock` s.

Every chunk knows its file and first row, so a record that does not validate is reported by file and row.
"""

from __future__ import annotations

import bisect
import importlib
import io
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from producers.errors import ProducerError
from producers.framing import LAST_TABLE, Block, ColumnBlock
from topics.records import MboRecord

logger = logging.getLogger(__name__)

MBO_RTYPE = 0xA0
MBO_SIZE = 56
MBO_LENGTH_WORDS = MBO_SIZE // 4
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK_RECORDS = 8192
_ACTIONS = b"ACMRTFN"
_SIDES = b"ABN"

# column -> (memoryview format, stride in items, offset in items) of the 56-byte MboMsg layout
_LAYOUT: dict[str, tuple[str, int, int]] = {
    "ts_event": ("Q", 7, 1), "order_id": ("Q", 7, 2), "price": ("q", 7, 3), "ts_recv": ("Q", 7, 5),
    "size": ("I", 14, 8), "ts_in_delta": ("i", 14, 12), "sequence": ("I", 14, 13),
    "flags": ("B", 56, 36), "channel_id": ("B", 56, 37),
}
_TEXT_OFFSET = {"action": 38, "side": 39}


class InvalidRecordError(ProducerError):
    """A record that must not be published, with where it is."""

    def __init__(self, path: str, row: int, reason: str, offset: int | None = None) -> None:
        self.path, self.row, self.reason, self.offset = path, row, reason, offset
        where = f"{path}: row {row}" + (f" (byte {offset})" if offset is not None else "")
        super().__init__(f"{where}: {reason}")


class SourceError(ProducerError):
    """An input file that cannot be read as MBO records."""


class RawMboBlock:
    """A :class:`~producers.framing.Block` over raw MboMsg bytes of one (publisher_id, instrument_id)."""

    __slots__ = ("_views", "instrument_id", "last", "mv", "publisher_id", "symbol")

    def __init__(self, mv: memoryview, publisher_id: int, instrument_id: int, symbol: str | None) -> None:
        self.mv = mv
        self.publisher_id = publisher_id
        self.instrument_id = instrument_id
        self.symbol = symbol
        self._views = {fmt: mv.cast(fmt) for fmt in ("Q", "q", "I", "i")}
        self._views["B"] = mv
        self.last = mv[36::MBO_SIZE].tobytes().translate(LAST_TABLE)

    def __len__(self) -> int:
        return len(self.mv) // MBO_SIZE

    def ints(self, name: str, start: int, stop: int) -> list[int]:
        fmt, stride, offset = _LAYOUT[name]
        return self._views[fmt][start * stride + offset : stop * stride : stride].tolist()

    def text(self, name: str, start: int, stop: int) -> str:
        off = _TEXT_OFFSET[name]
        return self.mv[start * MBO_SIZE + off : stop * MBO_SIZE : MBO_SIZE].tobytes().decode("ascii")


class Chunk(Protocol):
    """Consecutive records of a file, any instruments, in file order."""

    path: str
    row: int  # row of the first record in the file (0-based, counting MBO records)

    def __len__(self) -> int: ...

    def ts_recv(self) -> list[int]: ...

    def last_ts_recv(self) -> int: ...

    def slice(self, start: int, stop: int) -> Chunk: ...

    def blocks(self) -> list[Block]: ...


@dataclass
class RawChunk:
    """Consecutive raw MboMsg records (56 bytes each)."""

    mv: memoryview
    path: str
    row: int
    symbols: dict[int, str]
    _ts: list[int] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.mv) // MBO_SIZE

    def ts_recv(self) -> list[int]:
        if self._ts is None:
            self._ts = self.mv.cast("Q")[5::7].tolist()
        return self._ts

    def last_ts_recv(self) -> int:
        return int(self.mv[len(self.mv) - 16 : len(self.mv) - 8].cast("Q")[0])

    def slice(self, start: int, stop: int) -> RawChunk:
        ts = self._ts[start:stop] if self._ts is not None else None
        return RawChunk(self.mv[start * MBO_SIZE : stop * MBO_SIZE], self.path, self.row + start, self.symbols, ts)

    def blocks(self) -> list[Block]:
        """One block per (publisher_id, instrument_id); zero-copy when the chunk has a single instrument."""
        heads = self.mv.cast("Q")[0::7].tolist()  # length, rtype, publisher_id, instrument_id in one word
        if not heads:
            return []
        if heads.count(heads[0]) == len(heads):
            return [self._block(self.mv, heads[0])]
        groups: dict[int, list[int]] = {}
        for i, head in enumerate(heads):
            rows = groups.get(head)
            if rows is None:
                rows = groups[head] = []
            rows.append(i)
        raw = self.mv.tobytes()
        out: list[Block] = []
        for head, rows in groups.items():
            data = b"".join([raw[i * MBO_SIZE : (i + 1) * MBO_SIZE] for i in rows])
            out.append(self._block(memoryview(data), head))
        return out

    def _block(self, mv: memoryview, head: int) -> RawMboBlock:
        instrument_id = head >> 32
        return RawMboBlock(mv, (head >> 16) & 0xFFFF, instrument_id, self.symbols.get(instrument_id))


@dataclass
class RecordChunk:
    """Records decoded by a reader (CSV), in file order."""

    records: list[MboRecord]
    path: str
    row: int
    symbols: dict[int, str]

    def __len__(self) -> int:
        return len(self.records)

    def ts_recv(self) -> list[int]:
        return [r.ts_recv for r in self.records]

    def last_ts_recv(self) -> int:
        return self.records[-1].ts_recv

    def slice(self, start: int, stop: int) -> RecordChunk:
        return RecordChunk(self.records[start:stop], self.path, self.row + start, self.symbols)

    def blocks(self) -> list[Block]:
        return list(ColumnBlock.from_records(self.records, self.symbols))


@dataclass
class FileInfo:
    """What the file's header says about the session (DBN metadata), when it says it."""

    path: str
    start_ns: int | None = None
    end_ns: int | None = None
    symbols: dict[int, str] = field(default_factory=dict)


def is_dbn(path: str | Path) -> bool:
    name = str(path).lower()
    return name.endswith((".dbn", ".dbn.zst", ".dbn.zstd"))


def _open_binary(path: str) -> BinaryIO:
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller through the returned stream
    magic = f.peek(4)[:4] if isinstance(f, io.BufferedReader) else b""
    if magic != ZSTD_MAGIC:
        return f
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True, closefd=True)


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    parts: list[bytes] = []
    while n > 0:
        data = stream.read(n)
        if not data:
            break
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


def _metadata(path: str, header: bytes) -> FileInfo:
    info = FileInfo(path)
    try:
        dbn: Any = importlib.import_module("databento_dbn")
        decoder = dbn.DBNDecoder(upgrade_policy=dbn.VersionUpgradePolicy.UPGRADE_TO_V3)
        decoder.write(header)
        meta = decoder.decode()[0]
    except Exception as e:  # the metadata only adds symbols and the session range; records still replay
        logger.warning("%s: cannot decode the DBN metadata (%s); no symbols or session range", path, e)
        return info
    info.start_ns = int(meta.start) if meta.start else None
    end = meta.end
    info.end_ns = int(end) if end and int(end) < 2**63 else None
    for raw_symbol, intervals in (meta.mappings or {}).items():
        for interval in intervals:
            if str(interval.get("symbol", "")).isdigit():
                info.symbols[int(interval["symbol"])] = raw_symbol
    return info


class DbnChunks:
    """Reads a DBN file into :class:`RawChunk` s of MBO records; other record types are skipped and counted."""

    def __init__(self, path: str | Path, chunk_records: int = CHUNK_RECORDS, skip_invalid: bool = False) -> None:
        self.path = str(path)
        self.chunk_records = chunk_records
        self.skip_invalid = skip_invalid
        self.skipped_other = 0  # records of other schemas (system, error, symbol mapping messages)
        self.rejected = 0  # invalid MBO records dropped with skip_invalid
        self._stream = _open_binary(self.path)
        prefix = _read_exact(self._stream, 8)
        if len(prefix) < 8 or prefix[:3] != b"DBN":
            self._stream.close()
            raise SourceError(f"{self.path}: not a DBN file (no DBN header)")
        (length,) = struct.unpack_from("<I", prefix, 4)
        self.info = _metadata(self.path, prefix + _read_exact(self._stream, length))
        self._offset = 8 + length  # byte offset of the next record in the decompressed stream
        self._row = 0

    def close(self) -> None:
        self._stream.close()

    def __iter__(self) -> Iterator[RawChunk]:
        try:
            yield from self._chunks()
        finally:
            self.close()

    def _chunks(self) -> Iterator[RawChunk]:
        want = self.chunk_records * MBO_SIZE
        buf = b""
        while True:
            data = _read_exact(self._stream, want)
            buf = buf + data if buf else data
            if not buf:
                return
            mbo, rest, dense = self._split(buf)
            if mbo:
                yield from self._validated(memoryview(mbo), self._offset if dense else None)
            self._offset += len(buf) - len(rest)
            buf = rest
            if len(data) < want:
                if buf:
                    raise SourceError(f"{self.path}: truncated record at byte {self._offset}")
                return

    def _split(self, data: bytes) -> tuple[bytes, bytes, bool]:
        """(MBO record bytes, incomplete tail, whether ``data`` held MBO records only)."""
        n = len(data) // MBO_SIZE
        full = data[: n * MBO_SIZE]
        if full[0::MBO_SIZE].count(MBO_LENGTH_WORDS) == n and full[1::MBO_SIZE].count(MBO_RTYPE) == n:
            return full, data[n * MBO_SIZE :], True
        out = bytearray()
        pos = 0
        while pos < len(data):
            size = data[pos] * 4
            if size == 0:
                raise SourceError(f"{self.path}: record of length 0 at byte {self._offset + pos}")
            if pos + size > len(data):
                break
            if data[pos + 1] == MBO_RTYPE and size == MBO_SIZE:
                out += data[pos : pos + size]
            else:
                self.skipped_other += 1
            pos += size
        return bytes(out), data[pos:], False

    def _validated(self, mv: memoryview, offset: int | None) -> Iterator[RawChunk]:
        """The chunk, or its valid parts; invalid records stop the replay unless ``skip_invalid``."""
        row = self._row
        self._row += len(mv) // MBO_SIZE
        actions = mv[38::MBO_SIZE].tobytes()
        sides = mv[39::MBO_SIZE].tobytes()
        if not actions.translate(None, _ACTIONS) and not sides.translate(None, _SIDES):
            yield RawChunk(mv, self.path, row, self.info.symbols)
            return
        start = 0
        for i in range(len(actions)):
            if actions[i] in _ACTIONS and sides[i] in _SIDES:
                continue
            reason = f"invalid action {chr(actions[i])!r} or side {chr(sides[i])!r}"
            if start < i:
                yield RawChunk(mv[start * MBO_SIZE : i * MBO_SIZE], self.path, row + start, self.info.symbols)
            error = InvalidRecordError(self.path, row + i, reason, None if offset is None else offset + i * MBO_SIZE)
            if not self.skip_invalid:
                raise error
            self.rejected += 1
            logger.error("refusing to publish: %s", error, extra={"file": self.path, "row": row + i})
            start = i + 1
        if start < len(actions):
            yield RawChunk(mv[start * MBO_SIZE :], self.path, row + start, self.info.symbols)


class ReaderChunks:
    """Chunks of records from :func:`producers.readers.open_records` (Databento CSV, LOBSTER, ...), in file order.

    The reader validates every record; with ``skip_invalid`` it drops and reports bad rows (``rejected``),
    otherwise its error (naming the file and row) ends the replay after the records before it were sent.
    """

    def __init__(self, path: str, chunk_records: int = CHUNK_RECORDS, skip_invalid: bool = False) -> None:
        try:
            open_records: Any = importlib.import_module("producers.readers").open_records
        except (ImportError, AttributeError) as e:
            raise SourceError(f"{path}: no reader for this format ({e})") from e
        self.path = path
        self.chunk_records = chunk_records
        self.reader = open_records(path, on_error="skip" if skip_invalid else "stop")
        self.info = FileInfo(path)

    @property
    def rejected(self) -> int:
        return int(self.reader.stats.skipped)

    def __iter__(self) -> Iterator[RecordChunk]:
        rows: list[MboRecord] = []
        row = 0
        symbols = self.reader.symbols
        try:
            for record in self.reader.records():
                rows.append(record)
                if len(rows) >= self.chunk_records:
                    yield RecordChunk(rows, self.path, row, dict(symbols))
                    row += len(rows)
                    rows = []
        except ProducerError as e:
            if rows:
                yield RecordChunk(rows, self.path, row, dict(symbols))
            raise InvalidRecordError(self.path, row + len(rows), str(e)) from e
        if rows:
            yield RecordChunk(rows, self.path, row, dict(symbols))


def window(chunks: Iterator[Chunk], start_ns: int | None, end_ns: int | None) -> Iterator[Chunk]:
    """The records of ``chunks`` with ``start_ns <= ts_recv <= end_ns`` (the input is in ts_recv order)."""
    for chunk in chunks:
        ts = chunk.ts_recv() if start_ns is not None or end_ns is not None else None
        if ts is None or not ts:
            yield chunk
            continue
        lo = 0
        if start_ns is not None and ts[0] < start_ns:
            if ts[-1] < start_ns:
                continue
            lo = bisect.bisect_left(ts, start_ns)
        hi = len(ts)
        if end_ns is not None and ts[-1] > end_ns:
            hi = bisect.bisect_right(ts, end_ns, lo)
        if lo < hi:
            yield chunk.slice(lo, hi) if (lo, hi) != (0, len(ts)) else chunk
        if hi < len(ts):
            return
