"""MBP-10 rows from an MBO replay, following Databento's MBP-10 conventions, and their CSV encoding.

:class:`Mbp10Tracker` applies each record to a book and says which MBP-10 rows that produces: every Databento
convention lives in its :meth:`Mbp10Tracker.feed` (docs/readers.md, "MBP-10 output", gives the evidence for each).
:class:`Mbp10CsvWriter` writes the rows as Databento's CSV encoder does (``pretty_ts``, ``pretty_px``): ISO
timestamps with 9 digits and ``Z``, prices with 9 decimals, an empty price with size 0 and count 0 for an empty
level. A row in the default ``by-side`` layout::

    ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,depth,price,size,flags,ts_in_delta,sequence,bid_px_00,bid_sz_00,bid_ct_00,ask_px_00,ask_sz_00,ask_ct_00,...,symbol,order_id
    2025-07-17T08:05:03.360842448Z,2025-07-17T08:05:03.360677248Z,10,2,1108,A,B,0,5.510000000,100,130,165200,851012,5.510000000,100,1,,0,0,...,ARL,817593
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import IO, Literal, Protocol

import msgspec

from topics.records import PRICE_SCALE, UNDEF_PRICE, Level, MboRecord

logger = logging.getLogger(__name__)

MBP10_RTYPE = 10
LEVELS = 10
RTYPE_BY_LEVELS = {1: 1, 10: MBP10_RTYPE}  # mbp-1 and mbp-10
UNDEF_TIMESTAMP = 18_446_744_073_709_551_615
UpdateSide = Literal["order", "none"]
Layout = Literal["by-side", "dbn"]
LAYOUTS: tuple[Layout, ...] = ("by-side", "dbn")
_HEAD = (
    "ts_recv", "ts_event", "rtype", "publisher_id", "instrument_id", "action", "side", "depth", "price", "size",
    "flags", "ts_in_delta", "sequence",
)


class BookView(Protocol):
    """What the tracker needs of a book (processors.book.Book has it)."""

    def apply(self, rec: MboRecord) -> bool: ...
    def levels(self, side: str, depth: int = 10) -> list[Level]: ...
    def depth_of(self, side: str, price: int) -> int | None: ...


class Mbp10Row(msgspec.Struct, frozen=True, kw_only=True):
    """One MBP-10 record (Databento's mbp-10 schema, rtype 10) plus the symbol and the MBO order id."""

    ts_recv: int  # of the MBO record that carries the row, ns
    ts_event: int  # of that record, ns
    publisher_id: int  # Databento publisher
    instrument_id: int  # numeric instrument id
    action: str  # A, C, M, R or T
    side: str  # A, B or N (see Mbp10Tracker.feed)
    depth: int  # level index of the event's price on its side, 0 = best
    price: int  # event price, 1e-9 fixed point; UNDEF_PRICE for R
    size: int  # event size
    flags: int  # the MBO record's flags
    ts_in_delta: int  # the MBO record's ts_in_delta, ns
    sequence: int  # the MBO record's sequence
    bids: list[Level]  # up to 10 bid levels after the event, best first
    asks: list[Level]  # up to 10 ask levels after the event, best first
    symbol: str = ""  # raw symbol when known
    order_id: int = 0  # order id of the MBO record that carries the row (0 for ITCH trades)
    rtype: int = MBP10_RTYPE  # always 10


class _TradeGroup:
    """An execution being collected: the T record, then F/C/M records of the same sequence."""

    __slots__ = ("depth", "point", "side", "trade")

    def __init__(self, trade: MboRecord, point: bool) -> None:
        self.trade = trade
        self.point = point  # some record of the group was a consistency point
        self.side = trade.side  # becomes the resting order's side at the first F/C/M
        self.depth: int | None = None  # depth of the fill price on the resting side before the fill

    def joins(self, rec: MboRecord) -> bool:
        t = self.trade
        return (
            rec.action in "FCM" and rec.sequence == t.sequence and rec.channel_id == t.channel_id
            and rec.instrument_id == t.instrument_id and rec.publisher_id == t.publisher_id
        )


class Mbp10Tracker:
    """Feeds MBO records of one book and returns the MBP-10 rows they produce. See :meth:`feed`."""

    def __init__(
        self, book: BookView, symbol: str = "", *, every_record: bool = False, update_side: UpdateSide = "order",
        top_only: bool = True, levels: int = LEVELS,
    ) -> None:
        if update_side not in ("order", "none"):
            raise ValueError(f"update_side must be 'order' or 'none', not {update_side!r}")
        if levels not in RTYPE_BY_LEVELS:
            raise ValueError(f"levels must be 1 (mbp-1) or 10 (mbp-10), not {levels}")
        self.levels = levels
        self.book = book
        self.symbol = symbol
        self.every_record = every_record
        self.update_side = update_side
        self.top_only = top_only
        self.rows = 0
        self.suppressed = 0  # consistency points that gave no row (F/N records, events below the top levels)
        self._group: _TradeGroup | None = None

    def feed(self, rec: MboRecord) -> list[Mbp10Row]:
        """Apply ``rec`` to the book; the MBP-10 rows due now (a pending execution may be closed first).

        Conventions (Databento's MBP-10 as derived from XNAS ITCH MBO; docs/readers.md has the evidence):

        1. A row is written at a consistency point only: an applied record with ``F_LAST`` (with
           ``every_record``, after every record instead, with the record's own action and side).
        2. An execution is one row: a ``T`` record followed by ``F`` and ``C`` (or ``M``) records of the same
           sequence is collected; its row has action ``T``, the T's price, size, timestamps, flags, sequence and
           order id, the side of the resting order (that of the F/C), the depth of the fill price on that side
           before the fill, and the book after the group's last record. It is written when the next record does
           not belong to the group (or at :meth:`flush`), if any record of the group was a consistency point.
        3. A ``T`` with no F/C after it (side ``N``: a hidden or non-displayed execution) is a row with action
           ``T``, its own side, depth 0 and the unchanged book.
        4. ``F`` and ``N`` records never make rows of their own.
        5. ``A``, ``C``, ``M``: action, price, size and order id of the record; side of the order (``"order"``)
           or ``N`` (``update_side="none"``, as some vendor files show); depth = level index of the price on
           that side, after the record for A and M, before it for C (the index the level had, also when the
           cancel removed it).
        6. ``R``: action R, side N, depth 0, undefined price, size 0, empty book (only with ``F_LAST``).
        7. Levels: the 10 best per side after the event; an empty level is an undefined price, size 0, count 0.
        8. ``top_only`` (the default): no row for an A/C/M that leaves the ten levels unchanged (an event
           outside them, e.g. an add or cancel at depth 10 or more), as Databento documents its MBP schemas
           ("every order book event across the top ten price levels"). A modify that moves an order across the
           boundary changes the ten levels and makes a row. ``top_only=False`` writes a row at every consistency
           point. ``levels=1`` makes MBP-1 rows (rtype 1).
        """
        rows: list[Mbp10Row] = []
        group = self._group
        if group is not None and not self.every_record:
            if group.joins(rec):
                self._join(group, rec)
                return rows
            rows.extend(self._close())
        before = self._depth(rec.side, rec.price) if rec.action in "CF" else None
        watch = self.top_only and not self.every_record and rec.action in "ACM"
        top_before = self._top() if watch else None
        point = self.book.apply(rec)
        if self.every_record:
            rows.append(self._row(rec, rec.side, self._record_depth(rec, before)))
        elif rec.action == "T":
            self._group = _TradeGroup(rec, point)
        elif point:
            rows.extend(self._point(rec, before, top_before))
        self.rows += len(rows)
        return rows

    def flush(self) -> list[Mbp10Row]:
        """Rows still pending at the end of the input (a last execution)."""
        rows = self._close()
        self.rows += len(rows)
        return rows

    def _join(self, group: _TradeGroup, rec: MboRecord) -> None:
        if group.depth is None:
            group.side = rec.side
            group.depth = self._depth(rec.side, rec.price)
        group.point |= self.book.apply(rec)

    def _close(self) -> list[Mbp10Row]:
        group, self._group = self._group, None
        if group is None or not group.point:
            return []
        return [self._row(group.trade, group.side, group.depth or 0)]

    def _point(
        self, rec: MboRecord, before: int | None, top_before: tuple[list[Level], list[Level]] | None,
    ) -> list[Mbp10Row]:
        if rec.action in "FN":
            self.suppressed += 1
            return []
        depth = self._record_depth(rec, before)
        if top_before is not None and top_before == self._top():
            self.suppressed += 1  # the event left the ten levels as they were: outside MBP-10's view
            return []
        side = rec.side if self.update_side == "order" or rec.action not in "ACM" else "N"
        return [self._row(rec, side, depth)]

    def _top(self) -> tuple[list[Level], list[Level]]:
        return self.book.levels("B", self.levels), self.book.levels("A", self.levels)

    def _record_depth(self, rec: MboRecord, before: int | None) -> int:
        if rec.action in "CF":
            return before or 0
        if rec.action in "AM":
            return self._depth(rec.side, rec.price) or 0
        return 0

    def _depth(self, side: str, price: int) -> int | None:
        return self.book.depth_of(side, price) if side in ("A", "B") else None

    def _row(self, rec: MboRecord, side: str, depth: int) -> Mbp10Row:
        return Mbp10Row(
            ts_recv=rec.ts_recv, ts_event=rec.ts_event, publisher_id=rec.publisher_id,
            instrument_id=rec.instrument_id, action=rec.action, side=side, depth=depth,
            price=rec.price, size=rec.size, flags=rec.flags, ts_in_delta=rec.ts_in_delta, sequence=rec.sequence,
            bids=self.book.levels("B", self.levels), asks=self.book.levels("A", self.levels), symbol=self.symbol,
            order_id=rec.order_id, rtype=RTYPE_BY_LEVELS[self.levels],
        )


def header(layout: Layout = "by-side", levels: int = LEVELS) -> list[str]:
    """Column names: ``by-side`` lists bid px/sz/ct then ask px/sz/ct per level and ends with symbol, order_id;
    ``dbn`` is Databento's CSV encoder order (bid_px, ask_px, bid_sz, ask_sz, bid_ct, ask_ct; symbol)."""
    cols = list(_HEAD)
    for i in range(levels):
        n = f"{i:02d}"
        if layout == "by-side":
            cols += [f"bid_px_{n}", f"bid_sz_{n}", f"bid_ct_{n}", f"ask_px_{n}", f"ask_sz_{n}", f"ask_ct_{n}"]
        else:
            cols += [f"bid_px_{n}", f"ask_px_{n}", f"bid_sz_{n}", f"ask_sz_{n}", f"bid_ct_{n}", f"ask_ct_{n}"]
    return [*cols, "symbol", "order_id"] if layout == "by-side" else [*cols, "symbol"]


@lru_cache(maxsize=1 << 16)
def format_price(value: int) -> str:
    """``5510000000`` -> ``"5.510000000"`` (always 9 decimals); empty for UNDEF_PRICE."""
    if value == UNDEF_PRICE:
        return ""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), PRICE_SCALE)
    return f"{sign}{whole}.{frac:09d}"


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def format_ts(ns: int) -> str:
    """UNIX ns -> ``"2025-07-17T08:05:03.360842448Z"``; empty for UNDEF_TIMESTAMP."""
    if ns == UNDEF_TIMESTAMP:
        return ""
    seconds, frac = divmod(ns, 1_000_000_000)
    return f"{_second(seconds)}.{frac:09d}Z"


def parse_ts_text(text: str) -> int:
    """Inverse of :func:`format_ts`, for tests and tools."""
    base = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    return base * 1_000_000_000 + int(text[20:29])


_EMPTY_LEVEL = ("", "0", "0")  # an empty level: undefined price, size 0, count 0


def _level_cells(levels: Sequence[Level], n: int) -> list[tuple[str, str, str]]:
    cells = [(format_price(lvl.price), str(lvl.size), str(lvl.count)) for lvl in levels[:n]]
    return cells + [_EMPTY_LEVEL] * (n - len(cells))


def encode_row(row: Mbp10Row, layout: Layout = "by-side", levels: int = LEVELS) -> list[str]:
    """The CSV cells of one row, in the order of :func:`header`."""
    cells = [
        format_ts(row.ts_recv), format_ts(row.ts_event), str(row.rtype), str(row.publisher_id),
        str(row.instrument_id), row.action, row.side, str(row.depth), format_price(row.price), str(row.size),
        str(row.flags), str(row.ts_in_delta), str(row.sequence),
    ]
    for bid, ask in zip(_level_cells(row.bids, levels), _level_cells(row.asks, levels), strict=True):
        if layout == "by-side":
            cells += (*bid, *ask)
        else:
            cells += (bid[0], ask[0], bid[1], ask[1], bid[2], ask[2])
    cells.append(row.symbol)
    if layout == "by-side":
        cells.append(str(row.order_id))
    return cells


class Mbp10CsvWriter:
    """Writes MBP-10 rows as CSV (``\\n`` line ends, no quoting needed for these fields but symbols are quoted
    when they hold a comma or quote)."""

    def __init__(self, out: IO[str], layout: Layout = "by-side", levels: int = LEVELS) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
        self.out = out
        self.layout: Layout = layout
        self.levels = levels
        self.rows = 0
        out.write(",".join(header(layout, levels)) + "\n")

    def write(self, rows: Iterable[Mbp10Row]) -> None:
        for row in rows:
            cells = encode_row(row, self.layout, self.levels)
            cells[-1 if self.layout == "dbn" else -2] = _quote(row.symbol)
            self.out.write(",".join(cells) + "\n")
            self.rows += 1


def _quote(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


__all__ = [
    "LAYOUTS", "LEVELS", "MBP10_RTYPE", "Mbp10CsvWriter", "Mbp10Row", "Mbp10Tracker", "encode_row",
    "format_price", "format_ts", "header",
]
