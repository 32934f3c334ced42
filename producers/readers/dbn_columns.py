"""Fast DBN reading for producers: MBO records sliced straight into columns, no object per record.

An MBO record is 56 bytes in every DBN version (64 with ``ts_out``), little-endian::

    offset  0 length u8 (in 4-byte words: 14)   1 rtype u8 (160)   2 publisher_id u16   4 instrument_id u32
            8 ts_event u64   16 order_id u64   24 price i64   32 size u32   36 flags u8   37 channel_id u8
           38 action char   39 side char   40 ts_recv u64   48 ts_in_delta i32   52 sequence u32

A block of such records is viewed through ``memoryview.cast`` and every field is one strided slice turned into a
list in C, about ten times faster than reading attributes of decoded records. A block holding anything else
(symbol mappings in a live capture, other schemas) is walked record by record by its length bytes; the MBO records
of it still go through the fast slicing. The metadata is decoded by ``databento_dbn`` (any version).
"""

from __future__ import annotations

import logging
import operator
import sys
from collections.abc import Iterator, Sequence
from typing import IO

import databento_dbn as dbn

from producers.readers.base import MboColumns, Problems
from producers.readers.dbn import MBO_RTYPE, UPGRADE, DbnReader
from producers.readers.errors import TruncatedFileError, UnrecoverableRecordError
from producers.readers.source import open_binary

logger = logging.getLogger(__name__)

MBO_BYTES = 56
_ACTION_LETTERS = str.maketrans("", "", "ACMRTFN")
_SIDE_LETTERS = str.maketrans("", "", "ABN")


def iter_dbn_columns(reader: DbnReader, max_records: int) -> Iterator[MboColumns]:
    """See :meth:`MboReader.iter_columns`; byte offsets in errors are those of the decompressed stream."""
    if max_records < 1:
        raise ValueError("max_records must be at least 1")
    if sys.byteorder != "little":  # the casts below read native order; DBN is little-endian
        yield from super(DbnReader, reader).iter_columns(max_records)
        return
    problems = reader.start_pass()
    with open_binary(reader.path) as (raw, stream):
        prefix = reader.begin(stream)
        scanner = _Scanner(reader, problems, prefix.version, 64 if prefix.metadata.ts_out else MBO_BYTES)
        yield from scanner.run(raw, stream, prefix.records_offset, max_records)


class _Scanner:
    """One pass over the records of a DBN stream."""

    def __init__(self, reader: DbnReader, problems: Problems, version: int, rec_len: int) -> None:
        self.reader = reader
        self.problems = problems
        self.version = version
        self.rec_len = rec_len

    def run(self, raw: IO[bytes], stream: IO[bytes], offset: int, max_records: int) -> Iterator[MboColumns]:
        block_bytes = self.rec_len * max_records
        left = b""
        while data := stream.read(block_bytes - len(left)):
            block = left + data if left else data
            mbo, used, offsets = self._split(block, offset)
            left = block[used:]
            if mbo:
                yield from self._columns(mbo, offsets or range(offset, offset + len(mbo), self.rec_len))
            offset += used
            self.reader.mark_progress(raw.tell())
        if left:
            self.problems.report(
                f"byte offset {offset}", f"the file ends inside a record ({len(left)} of {left[0] * 4} bytes)",
                "truncated", TruncatedFileError,
            )

    def _split(self, block: bytes, offset: int) -> tuple[bytes, int, list[int] | None]:
        """(the MBO records of ``block`` concatenated, the bytes of whole records in it, their offsets when
        they are not contiguous)."""
        n = len(block) // self.rec_len
        whole = n * self.rec_len
        words = self.rec_len // 4
        if (
            block[0:whole:self.rec_len].count(words) == n
            and block[1:whole:self.rec_len].count(MBO_RTYPE) == n
        ):
            return block[:whole], whole, None
        return self._walk(block, offset)

    def _walk(self, block: bytes, offset: int) -> tuple[bytes, int, list[int]]:
        """Record by record: keep MBO records, count (and learn symbols from) the rest."""
        keep: list[bytes] = []
        offsets: list[int] = []
        pos = 0
        while pos + 2 <= len(block):
            length = block[pos] * 4
            if length < 16:
                raise UnrecoverableRecordError(
                    self.reader.path, f"byte offset {offset + pos}",
                    f"record length {length} bytes is shorter than a record header (16)",
                )
            if pos + length > len(block):
                break
            record = block[pos:pos + length]
            if record[1] == MBO_RTYPE and length == self.rec_len:
                keep.append(record)
                offsets.append(offset + pos)
            else:
                self._ignore(record)
            pos += length
        return b"".join(keep), pos, offsets

    def _ignore(self, record: bytes) -> None:
        decoder = dbn.DBNDecoder(has_metadata=False, input_version=self.version, upgrade_policy=UPGRADE)
        try:
            msgs = decoder.write_and_decode(record)
        except dbn.DBNError:
            self.reader.stats.ignored[f"rtype 0x{record[1]:02x}"] += 1
            return
        for msg in msgs:
            self.reader.ignore(msg)
        if not msgs:
            self.reader.stats.ignored[f"rtype 0x{record[1]:02x}"] += 1

    def _columns(self, data: bytes, offsets: Sequence[int]) -> Iterator[MboColumns]:
        cols = self._slice(data)
        bad = self._invalid_rows(cols, offsets)
        if bad:
            keep = [i for i in range(len(cols["action"])) if i not in bad]
            cols = {k: _take(v, keep) for k, v in cols.items()}
        count = len(cols["action"])
        if not count:
            return
        self.reader.stats.records += count
        yield from _by_instrument(cols, self.reader.symbols)

    def _slice(self, data: bytes) -> dict[str, list[int] | str]:
        mv = memoryview(data)
        q, i, r = self.rec_len // 8, self.rec_len // 4, self.rec_len
        u64, i64, u32, i32, u16 = mv.cast("Q"), mv.cast("q"), mv.cast("I"), mv.cast("i"), mv.cast("H")
        return {
            "publisher_id": u16[1::r // 2].tolist(), "instrument_id": u32[1::i].tolist(),
            "ts_event": u64[1::q].tolist(), "order_id": u64[2::q].tolist(), "price": i64[3::q].tolist(),
            "size": u32[8::i].tolist(), "flags": list(data[36::r]), "channel_id": list(data[37::r]),
            "action": data[38::r].decode("latin-1"), "side": data[39::r].decode("latin-1"),
            "ts_recv": u64[5::q].tolist(), "ts_in_delta": i32[12::i].tolist(), "sequence": u32[13::i].tolist(),
        }

    def _invalid_rows(self, cols: dict[str, list[int] | str], offsets: Sequence[int]) -> set[int]:
        """Rows whose action or side letter is not a Databento one, each reported to the error policy."""
        action, side = str(cols["action"]), str(cols["side"])
        if not action.translate(_ACTION_LETTERS) and not side.translate(_SIDE_LETTERS):
            return set()
        bad = set()
        for k, (a, s) in enumerate(zip(action, side, strict=True)):
            where = f"byte offset {offsets[k]}"
            if a not in "ACMRTFN":
                self.problems.report(where, f"action: {a!r} is not one of ACFMNRT", "bad action")
                bad.add(k)
            elif s not in "ABN":
                self.problems.report(where, f"side: {s!r} is not one of ABN", "bad side")
                bad.add(k)
        return bad


def _take(values: list[int] | str, keep: list[int]) -> list[int] | str:
    if isinstance(values, str):
        return "".join(values[k] for k in keep)
    return [values[k] for k in keep]


def _by_instrument(cols: dict[str, list[int] | str], symbols: dict[int, str]) -> Iterator[MboColumns]:
    pubs, insts = cols["publisher_id"], cols["instrument_id"]
    assert isinstance(pubs, list) and isinstance(insts, list)
    if len(set(insts)) == 1 and len(set(pubs)) == 1:
        yield _batch(pubs[0], insts[0], cols, symbols)
        return
    groups: dict[tuple[int, int], list[int]] = {}
    for k, key in enumerate(zip(pubs, insts, strict=True)):
        groups.setdefault(key, []).append(k)
    for (pub, inst), rows in groups.items():
        pick = operator.itemgetter(*rows)
        sub: dict[str, list[int] | str] = {}
        for name, values in cols.items():
            got = pick(values)
            seq = got if len(rows) > 1 else (got,)
            sub[name] = "".join(seq) if isinstance(values, str) else list(seq)
        yield _batch(pub, inst, sub, symbols)


def _batch(pub: int, inst: int, cols: dict[str, list[int] | str], symbols: dict[int, str]) -> MboColumns:
    def ints(name: str) -> list[int]:
        v = cols[name]
        assert isinstance(v, list)
        return v

    return MboColumns(
        publisher_id=pub, instrument_id=inst, symbol=symbols.get(inst),
        ts_recv=ints("ts_recv"), ts_event=ints("ts_event"), action=str(cols["action"]), side=str(cols["side"]),
        price=ints("price"), size=ints("size"), channel_id=ints("channel_id"), order_id=ints("order_id"),
        flags=ints("flags"), ts_in_delta=ints("ts_in_delta"), sequence=ints("sequence"),
    )

