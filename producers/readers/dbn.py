"""Databento DBN files (versions 1, 2 and 3; plain or zstd-compressed) as MBO records.

Records are decoded by ``databento_dbn.DBNDecoder`` with ``UPGRADE_TO_V3``, fed in chunks: the file is streamed,
never read whole. zstd input is read with ``read_across_frames=True`` because Databento files often hold several
zstd frames. Records of other types in a mixed file (symbol mappings, MBP, OHLCV, ...) are skipped and counted in
``stats.ignored``; a file whose metadata names another schema is refused.

A record as the decoder shows it::

    MboMsg(ts_recv=1609146088297109209, rtype=160, publisher_id=2, instrument_id=6155,
           ts_event=1609146088297098637, action='A', side='B', price=502000000000, size=2, channel_id=0,
           order_id=196851, flags=130, ts_in_delta=10572, sequence=289000)

:meth:`DbnReader.iter_columns` is a faster path for producers: it slices the fixed 56-byte MBO records straight
into columns (see :mod:`producers.readers.dbn_columns`).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import databento_dbn as dbn

from producers.readers.base import DEFAULT_BATCH, MboColumns, MboReader, OnError, Problems
from producers.readers.errors import (
    TruncatedFileError,
    UnrecoverableRecordError,
    UnsupportedFileError,
)
from producers.readers.source import open_binary
from topics.records import ACTIONS, SIDES, MboRecord

logger = logging.getLogger(__name__)

DBN_MAGIC = b"DBN"
DBN_VERSIONS = (1, 2, 3)
MBO_RTYPE = 160
SYMBOL_MAPPING_RTYPE = 22
UPGRADE = cast(dbn.VersionUpgradePolicy, dbn.VersionUpgradePolicy.UPGRADE_TO_V3)  # the stubs call it an int
CHUNK_BYTES = 1 << 20
_PREFIX = struct.Struct("<3sBI")  # b"DBN", version, metadata length


@dataclass(frozen=True, slots=True)
class DbnPrefix:
    """The start of a DBN stream: its version, the decoded metadata, and where the records begin."""

    version: int  # DBN version as written in the file (the metadata object shows the upgraded one)
    metadata: Any  # databento_dbn.Metadata, upgraded to v3
    data: bytes  # the raw prefix bytes (magic, version, length, metadata)

    @property
    def records_offset(self) -> int:
        return len(self.data)


def read_exact(stream: IO[bytes], n: int) -> bytes:
    """``n`` bytes, or fewer only at the end of the stream."""
    parts, got = [], 0
    while got < n:
        part = stream.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_prefix(stream: IO[bytes], path: Path) -> DbnPrefix:
    """Read and decode the DBN header and metadata; :class:`UnsupportedFileError` when it is not DBN."""
    head = read_exact(stream, _PREFIX.size)
    if len(head) < _PREFIX.size or head[:3] != DBN_MAGIC:
        raise UnsupportedFileError(path, "not a DBN file (no 'DBN' header)")
    _, version, length = _PREFIX.unpack(head)
    if version not in DBN_VERSIONS:
        raise UnsupportedFileError(path, f"DBN version {version} is not supported (only {DBN_VERSIONS})")
    body = read_exact(stream, length)
    if len(body) < length:
        raise TruncatedFileError(
            path, "byte offset 8", f"metadata is {length} bytes but the file ends after {len(body)}",
        )
    try:
        decoded = dbn.DBNDecoder(upgrade_policy=UPGRADE).write_and_decode(head + body)
    except dbn.DBNError as e:
        raise UnsupportedFileError(path, f"invalid DBN metadata: {e}") from None
    return DbnPrefix(version=version, metadata=decoded[0], data=head + body)


def check_schema(prefix: DbnPrefix, path: Path) -> None:
    """MBO files and mixed-schema files (schema None) pass; any other schema is refused."""
    schema = prefix.metadata.schema
    if schema is not None and schema != dbn.Schema.MBO:
        raise UnsupportedFileError(path, f"the file's schema is {schema}, not mbo")


def metadata_symbols(metadata: Any) -> dict[int, str]:
    """instrument_id -> symbol from the metadata's mappings (the requested symbol, raw when stype_in is raw)."""
    out: dict[int, str] = {}
    for symbol, intervals in (metadata.mappings or {}).items():
        for interval in intervals:
            text = str(interval.get("symbol", ""))
            if text.isdigit():
                out[int(text)] = symbol
    return out


def mapping_symbol(msg: Any) -> tuple[int, str] | None:
    """(instrument_id, raw symbol) from an in-stream SymbolMappingMsg."""
    raw = getattr(msg, "stype_out_symbol", "") or getattr(msg, "stype_in_symbol", "")
    return (msg.instrument_id, raw) if raw else None


def locate_bad_record(data: bytes, start: int, base: int) -> tuple[int, str]:
    """Walk record headers of ``data`` from ``start``; the absolute offset and reason of the first impossible one."""
    known = {int(t.value) for t in dbn.RType.variants()}
    pos = start
    while pos + 2 <= len(data):
        length, rtype = data[pos] * 4, data[pos + 1]
        if length < 16:
            return base + pos, f"record length {length} bytes is shorter than a record header (16)"
        if rtype not in known:
            return base + pos, f"unknown record type 0x{rtype:02x}"
        pos += length
    return base + pos, "the decoder rejected the record here"


class DbnReader(MboReader):
    """MBO records of a DBN file; see the module docstring."""

    format = "dbn"

    def __init__(self, path: str | Path, *, on_error: OnError = "stop", chunk_bytes: int = CHUNK_BYTES) -> None:
        super().__init__(path, on_error=on_error)
        self.chunk_bytes = chunk_bytes
        self.prefix: DbnPrefix | None = None

    @property
    def metadata(self) -> Any:
        """The file's metadata (databento_dbn.Metadata), once a pass has started."""
        return self.prefix.metadata if self.prefix else None

    def begin(self, stream: IO[bytes]) -> DbnPrefix:
        """Read the stream's DBN prefix, check the schema, learn the metadata's symbols."""
        prefix = read_prefix(stream, self.path)
        check_schema(prefix, self.path)
        self.prefix = prefix
        self.symbols.update(metadata_symbols(prefix.metadata))
        return prefix

    def records(self) -> Iterator[MboRecord]:
        problems = self.start_pass()
        with open_binary(self.path) as (raw, stream):
            prefix = self.begin(stream)
            decoder = dbn.DBNDecoder(has_metadata=False, input_version=prefix.version, upgrade_policy=UPGRADE)
            yield from self._decode(raw, stream, decoder, prefix.records_offset, problems)

    def _decode(
        self, raw: IO[bytes], stream: IO[bytes], decoder: Any, start: int, problems: Problems,
    ) -> Iterator[MboRecord]:
        """``start`` is the offset of the first byte not yet decoded; it is exact after every chunk."""
        while chunk := stream.read(self.chunk_bytes):
            pending = decoder.buffer()
            try:
                decoded = decoder.write_and_decode(chunk)
            except dbn.DBNError:
                yield from self._fail(pending + chunk, start, problems)
                return
            yield from self._emit(decoded, start, problems)
            start += len(pending) + len(chunk) - len(decoder.buffer())
            self.mark_progress(raw.tell())
        self._finish(decoder, start, problems)

    def _emit(self, decoded: list[Any], pos: int, problems: Problems) -> Iterator[MboRecord]:
        """Yield the MBO records of ``decoded`` (which starts at byte offset ``pos``), counting the others."""
        for msg in decoded:  # offsets add record sizes (exact for MBO records)
            if isinstance(msg, dbn.MBOMsg):
                rec = self._convert(msg, pos, problems)
                if rec is not None:
                    self.stats.records += 1
                    yield rec
            else:
                self.ignore(msg)
            pos += msg.record_size()

    def _convert(self, msg: Any, pos: int, problems: Problems) -> MboRecord | None:
        action, side = str(msg.action), str(msg.side)
        if action not in ACTIONS:
            problems.report(f"byte offset {pos}", f"action: {action!r} is not one of ACFMNRT", "bad action")
            return None
        if side not in SIDES:
            problems.report(f"byte offset {pos}", f"side: {side!r} is not one of ABN", "bad side")
            return None
        return MboRecord(
            ts_recv=msg.ts_recv, ts_event=msg.ts_event, publisher_id=int(msg.publisher_id),
            instrument_id=msg.instrument_id, action=action, side=side,  # type: ignore[arg-type]
            price=msg.price, size=msg.size, channel_id=msg.channel_id, order_id=msg.order_id,
            flags=int(msg.flags), ts_in_delta=msg.ts_in_delta, sequence=msg.sequence,
        )

    def ignore(self, msg: Any) -> None:
        """Count a non-MBO record; a symbol mapping also teaches its symbol."""
        rtype = msg.rtype
        name = getattr(rtype, "name", str(rtype)).lower()
        self.stats.ignored[name] += 1
        if int(getattr(rtype, "value", rtype)) == SYMBOL_MAPPING_RTYPE:
            pair = mapping_symbol(msg)
            if pair:
                self.symbols[pair[0]] = pair[1]

    def _fail(self, data: bytes, base: int, problems: Problems) -> Iterator[MboRecord]:
        """A structural error: yield the good records before it, then raise (no resync is possible)."""
        assert self.prefix is not None
        bad, reason = locate_bad_record(data, 0, base)
        good = data[: bad - base]
        decoder = dbn.DBNDecoder(has_metadata=False, input_version=self.prefix.version, upgrade_policy=UPGRADE)
        decoded: list[Any] = decoder.write_and_decode(good) if good else []
        yield from self._emit(decoded, base, problems)
        raise UnrecoverableRecordError(self.path, f"byte offset {bad}", reason)

    def _finish(self, decoder: Any, pos: int, problems: Problems) -> None:
        left = decoder.buffer()
        if left:
            need = left[0] * 4 if left else 0
            problems.report(
                f"byte offset {pos}", f"the file ends inside a record ({len(left)} of {need} bytes)", "truncated",
                TruncatedFileError,
            )

    def iter_columns(self, max_records: int = DEFAULT_BATCH) -> Iterator[MboColumns]:
        from producers.readers.dbn_columns import iter_dbn_columns

        return iter_dbn_columns(self, max_records)
