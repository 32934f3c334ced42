"""Raw DBN bytes, for the books' ``apply_dbn`` path: the metadata header and the MBO record layout.

Pure parsing of bytes already in memory (reading and decompressing files is the caller's job). An MBO record is
56 bytes in DBN v1, v2 and v3 alike: a 16-byte header (length in 4-byte words, rtype, publisher_id,
instrument_id, ts_event), then order_id, price, size, flags, channel_id, action, side, ts_recv, ts_in_delta,
sequence, little-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

MBO_RTYPE: Final = 0xA0
MBO_SIZE: Final = 56
# length, rtype, publisher_id, instrument_id, ts_event, order_id, price, size, flags, channel_id, action, side,
# ts_recv, ts_in_delta, sequence
MBO: Final = struct.Struct("<BBHIQQqIBBccQiI")

MboFields = tuple[int, int, int, int, int, int, int, int, int, int, bytes, bytes, int, int, int]


def dbn_body(data: bytes | bytearray | memoryview) -> memoryview:
    """The records of a whole DBN stream: ``data`` without its metadata header ("DBN", version, u32 length)."""
    view = memoryview(data).cast("B")
    if bytes(view[:3]) != b"DBN" or len(view) < 8:
        raise ValueError("not a DBN stream: it does not start with b'DBN' and a metadata length")
    length = int.from_bytes(view[4:8], "little")
    if len(view) < 8 + length:
        raise ValueError(f"DBN metadata of {length} bytes is truncated")
    return view[8 + length:]


def records(body: bytes | bytearray | memoryview) -> Iterator[tuple[int, int, memoryview]]:
    """(index, rtype, record bytes) of each record of a DBN body; ValueError for a truncated buffer (up front)."""
    view = memoryview(body).cast("B")
    n = len(view)
    pos = 0
    while pos < n:
        length = view[pos] * 4
        if length < 16 or pos + length > n:
            raise ValueError(f"truncated or invalid DBN record at byte {pos}")
        pos += length
    pos = index = 0
    while pos < n:
        length = view[pos] * 4
        yield index, view[pos + 1], view[pos:pos + length]
        pos += length
        index += 1
