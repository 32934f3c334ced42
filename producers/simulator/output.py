"""Writing a simulated stream to a file that the readers replay exactly: Databento's MBO CSV layout, or DBN.

The CSV has the columns of Databento's MBO CSV (``ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,
price,size,channel_id,order_id,flags,ts_in_delta,sequence,symbol``): ISO 8601 nanosecond timestamps, prices as
decimals with nine fractional digits, an empty price when undefined. DBN files (``.dbn``, ``.dbn.zst``) hold
the same records as 56-byte MboMsg structs after DBN v3 metadata encoded by databento_dbn.
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from producers.errors import ProducerError
from producers.pacing import format_ts
from topics.records import PRICE_SCALE, UNDEF_PRICE, MboRecord

CSV_HEADER = (
    "ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,price,size,channel_id,order_id,flags,"
    "ts_in_delta,sequence,symbol\n"
)
MBO_RTYPE = 160
_MBO = struct.Struct("<BBHIQQqIBBccQiI")  # DBN MboMsg: header, order_id, price, size, flags, channel, action, side...


def format_price(price: int) -> str:
    """Databento's CSV price: ``5.510000000``; empty when undefined."""
    if price == UNDEF_PRICE:
        return ""
    sign = "-" if price < 0 else ""
    units, frac = divmod(abs(price), PRICE_SCALE)
    return f"{sign}{units}.{frac:09d}"


def csv_line(r: MboRecord, symbol: str) -> str:
    return (
        f"{format_ts(r.ts_recv)},{format_ts(r.ts_event)},{MBO_RTYPE},{r.publisher_id},{r.instrument_id},"
        f"{r.action},{r.side},{format_price(r.price)},{r.size},{r.channel_id},{r.order_id},{r.flags},"
        f"{r.ts_in_delta},{r.sequence},{symbol}\n"
    )


def mbo_bytes(r: MboRecord) -> bytes:
    return _MBO.pack(
        _MBO.size // 4, MBO_RTYPE, r.publisher_id, r.instrument_id, r.ts_event, r.order_id, r.price, r.size,
        r.flags, r.channel_id, r.action.encode(), r.side.encode(), r.ts_recv, r.ts_in_delta, r.sequence,
    )


class StreamWriter:
    """Writes records to ``path``: CSV unless the name ends in ``.dbn`` or ``.dbn.zst``."""

    def __init__(self, path: str | Path, symbols: dict[int, str], start_ns: int, dataset: str = "SIM.MBO") -> None:
        self.path = Path(path)
        self.symbols = symbols
        name = self.path.name.lower()
        self.dbn = name.endswith((".dbn", ".dbn.zst"))
        raw: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._raw = raw
        self._out: Any = raw
        if name.endswith(".zst"):
            import zstandard

            self._out = zstandard.ZstdCompressor().stream_writer(raw, closefd=False)
        if self.dbn:
            self._out.write(_dbn_metadata(dataset, start_ns, sorted(set(symbols.values()))))
        else:
            self._out.write(CSV_HEADER.encode())
        self.records = 0

    def write(self, records: Iterable[MboRecord]) -> None:
        if self.dbn:
            data = b"".join(mbo_bytes(r) for r in records)
        else:
            data = "".join(csv_line(r, self.symbols.get(r.instrument_id, "")) for r in records).encode()
        self._out.write(data)

    def close(self) -> None:
        if self._out is not self._raw:
            self._out.close()
        self._raw.close()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _dbn_metadata(dataset: str, start_ns: int, symbols: list[str]) -> bytes:
    try:
        dbn: Any = importlib.import_module("databento_dbn")
        meta = dbn.Metadata(
            dataset=dataset, start=start_ns, stype_in=dbn.SType.RAW_SYMBOL, stype_out=dbn.SType.INSTRUMENT_ID,
            schema=dbn.Schema.MBO, symbols=symbols,
        )
        return bytes(meta.encode())
    except Exception as e:
        raise ProducerError(f"cannot write DBN metadata with databento_dbn ({e}); write CSV instead") from e
