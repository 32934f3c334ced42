"""LOBSTER message files (lobsterdata.com, NASDAQ TotalView-ITCH reconstructions) as Databento-style MBO records.

A message row: time (seconds after midnight, exchange local time, up to ns), event type, order id, size, price
(dollars x 10000), direction (1 buy, -1 sell); no header::

    34200.004241176,1,16113575,18,5853300,1

The date and ticker come from the file name, ``TICKER_YYYY-MM-DD_START_END_message_LEVEL.csv`` (or the ``date=``
and ``symbol=`` options). Mapping to MBO, mirroring what Databento publishes for XNAS.ITCH (docs/readers.md has the
reasoning and what LOBSTER cannot tell):

====  ==========================  ============================================================================
type  LOBSTER                     MBO records (all with sequence = the row's line number)
====  ==========================  ============================================================================
1     new limit order             A, side of the direction, the order id, size, price
2     partial cancellation        C of the cancelled size
3     deletion                    C of the size deleted (the order's remaining size)
4     visible execution           T with the aggressor side (opposite the direction) and order id 0, then F
                                  and C of the executed size on the resting order (its side and id)
5     hidden execution            T with side N, no book change
6     cross trade                 T with side N, no book change
7     trading halt / resume       none; counted in ``stats.ignored`` ("halt", "quoting", "resume")
====  ==========================  ============================================================================

Consecutive rows with the same timestamp are one event: only the last record of the last of them carries
``F_LAST`` (a sweep through several resting orders is published once, after its last fill). ``ts_recv`` equals
``ts_event``; ``ts_in_delta`` is 0.
"""

from __future__ import annotations

import calendar
import logging
import re
from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec

from producers.readers.base import MboReader, OnError, Problems
from producers.readers.errors import UnsupportedFileError
from producers.readers.source import open_text
from producers.readers.text import NS, FieldError, csv_rows, parse_int
from topics.records import F_LAST, MboRecord

logger = logging.getLogger(__name__)

NAME = re.compile(r"(?P<ticker>[^_]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)_message_(?P<level>\d+)")
PRICE_UNIT = 100_000  # one LOBSTER price unit (1/10000 dollar) in 1e-9 fixed point
COLUMNS = 6
HALT_KINDS = {-1: "halt", 0: "quoting", 1: "resume"}
_SIDE = {1: "B", -1: "A"}
_OPPOSITE = {"B": "A", "A": "B"}
U32, U64 = 4_294_967_295, 18_446_744_073_709_551_615


class LobsterReader(MboReader):
    """MBO records of a LOBSTER message file; see the module docstring for the mapping."""

    format = "lobster"

    def __init__(
        self, path: str | Path, *, on_error: OnError = "stop", instrument_id: int = 0, publisher_id: int = 0,
        date: str | date | None = None, symbol: str | None = None, tz: str = "America/New_York",
    ) -> None:
        super().__init__(path, on_error=on_error)
        self.instrument_id = instrument_id
        self.publisher_id = publisher_id
        found = NAME.match(self.path.name)
        day = date if date is not None else (found["date"] if found else None)
        if day is None:
            raise UnsupportedFileError(self.path, "cannot tell the trading date from the file name: pass date=")
        self.date = day if not isinstance(day, str) else datetime.strptime(day, "%Y-%m-%d").date()
        self.symbol = symbol or (found["ticker"] if found else None)
        if self.symbol:
            self.symbols[instrument_id] = self.symbol
        self.midnight_ns = local_midnight_ns(self.date, tz)

    def records(self) -> Iterator[MboRecord]:
        problems = self.start_pass()
        pending: list[MboRecord] = []
        with open_text(self.path) as (raw, text):
            rows = csv_rows(text, lambda line, reason: problems.report(f"row {line}", reason, "csv syntax"))
            for line, row in rows:
                if not row:
                    continue
                event = self._parse(row, line, problems)
                if event is None:
                    continue
                if pending and pending[0].ts_event != event[0].ts_event:
                    yield from self._flush(pending, last=True)
                    pending = []
                if pending:
                    yield from self._flush(pending, last=False)
                pending = event
                if not line % 4096:
                    self.mark_progress(raw.tell())
            self.mark_progress(raw.tell())
        if pending:
            yield from self._flush(pending, last=True)

    def _flush(self, records: list[MboRecord], last: bool) -> Iterator[MboRecord]:
        self.stats.records += len(records)
        if last:
            tail = records[-1]
            records = [*records[:-1], msgspec.structs.replace(tail, flags=tail.flags | F_LAST)]
        yield from records

    def _parse(self, row: list[str], line: int, problems: Problems) -> list[MboRecord] | None:
        try:
            return self._convert(parse_message(row), line)
        except FieldError as e:
            problems.report(f"row {line}", e.reason, e.category)
            return None

    def _convert(self, msg: LobsterMessage, line: int) -> list[MboRecord] | None:
        """The MBO records of one message (see the module docstring), None for a halt message."""
        if msg.kind == 7:
            kind = HALT_KINDS.get(msg.price, "halt")
            self.stats.ignored[kind] += 1
            logger.info("%s: row %d: trading %s", self.path, line, kind)
            return None
        ts = self.midnight_ns + msg.time_ns
        price = msg.price * PRICE_UNIT

        def make(action: str, side: str, order_id: int) -> MboRecord:
            return MboRecord(
                ts_recv=ts, ts_event=ts, publisher_id=self.publisher_id, instrument_id=self.instrument_id,
                action=action, side=side, price=price, size=msg.size, order_id=order_id,  # type: ignore[arg-type]
                sequence=line,
            )

        if msg.kind == 1:
            return [make("A", _SIDE[msg.direction], msg.order_id)]
        if msg.kind in (2, 3):
            return [make("C", _SIDE[msg.direction], msg.order_id)]
        if msg.kind == 4:
            side = _SIDE[msg.direction]
            return [make("T", _OPPOSITE[side], 0), make("F", side, msg.order_id), make("C", side, msg.order_id)]
        return [make("T", "N", msg.order_id)]  # 5 hidden execution, 6 cross trade


class LobsterMessage(msgspec.Struct, frozen=True):
    """One row of a LOBSTER message file, e.g. ``34200.004241176,1,16113575,18,5853300,1``."""

    time_ns: int  # column 1, seconds after midnight (exchange local time) as ns
    kind: int  # column 2, event type 1..7 (submit, partial cancel, delete, execution, hidden execution, cross, halt)
    order_id: int  # column 3, LOBSTER's order reference (0 for hidden executions and halts)
    size: int  # column 4, shares
    price: int  # column 5, dollars x 10000; for halts -1 halt, 0 quoting, 1 resume
    direction: int  # column 6, 1 buy limit order, -1 sell limit order (the resting side for executions)


def parse_message(row: list[str]) -> LobsterMessage:
    """A message row, checked; :class:`FieldError` names the field that is wrong."""
    if len(row) != COLUMNS:
        raise FieldError("column count", f"expected {COLUMNS} columns, got {len(row)}")
    msg = LobsterMessage(
        time_ns=parse_seconds(row[0]), kind=parse_int(row[1], "type", 1, 7),
        order_id=parse_int(row[2], "order id", 0, U64), size=parse_int(row[3], "size", 0, U32),
        price=parse_int(row[4], "price", -9_999_999_999, 9_999_999_999),
        direction=parse_int(row[5], "direction", -1, 1),
    )
    if msg.kind == 7:
        return msg
    if msg.kind <= 4 and msg.direction not in _SIDE:
        raise FieldError("bad direction", f"direction: {msg.direction} is not 1 (buy) or -1 (sell)")
    if msg.price <= 0:
        raise FieldError("bad price", f"price: {msg.price} is not a positive price")
    return msg


def parse_seconds(text: str) -> int:
    """``"34200.004241176"`` -> nanoseconds after midnight, exactly."""
    whole, _, frac = text.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > 9 or not text.isascii():
        raise FieldError("bad time", f"time: {text!r} is not seconds after midnight with up to 9 decimals")
    return int(whole) * NS + int(frac.ljust(9, "0") or 0)


def local_midnight_ns(day: date, tz: str) -> int:
    """UNIX ns of ``day``'s local midnight as the trading day sees it (the zone's offset at local noon)."""
    zone = ZoneInfo(tz)
    noon = datetime.combine(day, time(12), tzinfo=zone)
    offset = noon.utcoffset()
    assert offset is not None
    epoch_midnight = calendar.timegm(day.timetuple())
    return (epoch_midnight - int(offset.total_seconds())) * NS
