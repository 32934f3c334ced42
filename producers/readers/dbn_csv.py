"""Databento MBO files in CSV encoding (``DBNStore.to_csv`` / ``dbn --csv``), plain or zstd-compressed.

A row, with the header Databento writes (``pretty_ts`` and ``pretty_px`` on, ``map_symbols`` on)::

    ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,price,size,channel_id,order_id,flags,ts_in_delta,sequence,symbol
    2025-07-17T08:05:03.360842448Z,2025-07-17T08:05:03.360677248Z,160,2,1108,A,B,5.510000000,100,0,817593,130,165200,851012,ARL

Columns are found by name, so their order does not matter and extra columns (a pandas index) are ignored;
``rtype``, ``channel_id``, ``flags``, ``ts_in_delta``, ``sequence`` and ``symbol`` may be absent (defaults 160, 0,
0, 0, 0, none). Timestamps are ISO 8601 with up to 9 fractional digits or integer nanoseconds (``pretty_ts`` off).
Prices are decimal text parsed exactly to 1e-9 fixed point, an empty price being ``UNDEF_PRICE``; a file written
with ``pretty_px`` off holds integer fixed-point prices instead. Which one a file uses is decided on its first
non-empty price (``price_format="auto"``) or given (``"decimal"``, ``"fixed"``). Rows of another rtype are
skipped and counted in ``stats.ignored``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from producers.readers.base import MboReader, OnError, Problems
from producers.readers.errors import UnsupportedFileError
from producers.readers.source import open_text
from producers.readers.text import (
    FieldError,
    csv_rows,
    parse_decimal_price,
    parse_int,
    parse_timestamp,
)
from topics.records import ACTIONS, SIDES, UNDEF_PRICE, MboRecord

logger = logging.getLogger(__name__)

PriceFormat = Literal["auto", "decimal", "fixed"]
REQUIRED = ("ts_recv", "ts_event", "publisher_id", "instrument_id", "action", "side", "price", "size", "order_id")
OPTIONAL = ("rtype", "channel_id", "flags", "ts_in_delta", "sequence", "symbol")
MBO_RTYPE = "160"
U8, U16, U32, U64 = 255, 65_535, 4_294_967_295, 18_446_744_073_709_551_615
I32, I64 = 2_147_483_647, 9_223_372_036_854_775_807


class DatabentoCsvReader(MboReader):
    """MBO records of a Databento CSV file; see the module docstring."""

    format = "databento-csv"

    def __init__(self, path: str | Path, *, on_error: OnError = "stop", price_format: PriceFormat = "auto") -> None:
        super().__init__(path, on_error=on_error)
        if price_format not in ("auto", "decimal", "fixed"):
            raise ValueError(f"price_format must be auto, decimal or fixed, not {price_format!r}")
        self.price_format = price_format

    def records(self) -> Iterator[MboRecord]:
        problems = self.start_pass()
        with open_text(self.path) as (raw, text):
            rows = csv_rows(text, lambda line, reason: problems.report(f"row {line}", reason, "csv syntax"))
            _, header = next(rows, (0, None))
            if header is None:
                raise UnsupportedFileError(self.path, "the file is empty (no header row)")
            parser = _RowParser(self.path, header, self.price_format)
            for line, row in rows:
                rec = self._parse(parser, row, line, problems)
                if rec is not None:
                    self.stats.records += 1
                    yield rec
                if not line % 4096:
                    self.mark_progress(raw.tell())
            self.mark_progress(raw.tell())

    def _parse(self, parser: _RowParser, row: list[str], line: int, problems: Problems) -> MboRecord | None:
        if not row:
            return None  # blank line
        try:
            rec, symbol = parser.parse(row)
        except FieldError as e:
            problems.report(f"row {line}", e.reason, e.category)
            return None
        if rec is None:
            self.stats.ignored[f"rtype {row[parser.index['rtype']]}"] += 1
            return None
        if symbol:
            self.symbols[rec.instrument_id] = symbol
        return rec


class _RowParser:
    """Turns one CSV row into an :class:`MboRecord`, given the header."""

    def __init__(self, path: Path, header: list[str], price_format: PriceFormat) -> None:
        self.index = {name.strip(): k for k, name in enumerate(header)}
        missing = [name for name in REQUIRED if name not in self.index]
        if missing:
            raise UnsupportedFileError(
                path, f"not a Databento MBO CSV: the header lacks {', '.join(missing)} (it has {','.join(header)})",
            )
        self.width = len(header)
        self.price_format = price_format
        self._price: Callable[[str], int] | None = None if price_format == "auto" else _price_parser(price_format)

    def parse(self, row: list[str]) -> tuple[MboRecord | None, str | None]:
        """(record, symbol); the record is ``None`` for a well-formed row of another rtype."""
        if len(row) != self.width:
            raise FieldError("column count", f"expected {self.width} columns, got {len(row)}")
        ix = self.index
        if "rtype" in ix and row[ix["rtype"]] != MBO_RTYPE:
            parse_int(row[ix["rtype"]], "rtype", 0, U8)
            return None, None
        action, side = row[ix["action"]], row[ix["side"]]
        if action not in ACTIONS or len(action) != 1:
            raise FieldError("bad action", f"action: {action!r} is not one of ACFMNRT")
        if side not in SIDES or len(side) != 1:
            raise FieldError("bad side", f"side: {side!r} is not one of ABN")
        rec = MboRecord(
            ts_recv=parse_timestamp(row[ix["ts_recv"]], "ts_recv"),
            ts_event=parse_timestamp(row[ix["ts_event"]], "ts_event"),
            publisher_id=parse_int(row[ix["publisher_id"]], "publisher_id", 0, U16),
            instrument_id=parse_int(row[ix["instrument_id"]], "instrument_id", 0, U32),
            action=action, side=side,  # type: ignore[arg-type]
            price=self.price(row[ix["price"]]),
            size=parse_int(row[ix["size"]], "size", 0, U32),
            channel_id=self._opt(row, "channel_id", 0, U8),
            order_id=parse_int(row[ix["order_id"]], "order_id", 0, U64),
            flags=self._opt(row, "flags", 0, U8),
            ts_in_delta=self._opt(row, "ts_in_delta", -I32 - 1, I32),
            sequence=self._opt(row, "sequence", 0, U32),
        )
        symbol = row[ix["symbol"]] if "symbol" in ix else None
        return rec, symbol

    def _opt(self, row: list[str], name: str, lo: int, hi: int) -> int:
        k = self.index.get(name)
        return 0 if k is None else parse_int(row[k], name, lo, hi)

    def price(self, text: str) -> int:
        if not text:
            return UNDEF_PRICE
        if self._price is None:
            fmt: PriceFormat = "fixed" if text.lstrip("-").isdigit() else "decimal"
            logger.debug("prices read as %s (first price %r)", fmt, text)
            self._price = _price_parser(fmt)
        return self._price(text)


def _price_parser(fmt: PriceFormat) -> Callable[[str], int]:
    if fmt == "decimal":
        return parse_decimal_price

    def fixed(text: str) -> int:
        return parse_int(text, "price", -I64 - 1, I64)

    return fixed
