"""The tables the sink writes: columns in COPY order, the natural key, and how a record becomes rows.

Every price and size stays the 1e-9 fixed-point integer it is on the wire (BIGINT: exact, and the fastest type to
COPY); views in the schema expose numeric prices. ``ts`` is each table's time axis (hypertable dimension), a
microsecond ``timestamptz``; the exact nanosecond timestamps are kept beside it as ``*_ns`` BIGINT columns.
A row's ``ts`` value is carried as integer nanoseconds and converted by the COPY encoder.

Unsigned 64-bit venue order ids are stored as their two's-complement BIGINT (``v_book_trades`` shows them back
as numeric). The natural key of each table is a UNIQUE constraint: a replayed record inserts nothing.

A feature bar is one ``feature_vectors`` row: its values as a ``float8[]`` in the record's own name order, and
``set_id``, a 64-bit hash of that ordered name list, which ``feature_sets`` maps back to the names (migration 0005).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sinks.errors import RowError
from topics import catalog, codec, records
from topics.records import (
    BboUpdate,
    BookAnomaly,
    BookTrade,
    FeatureBar,
    Mbp10Snapshot,
    QuoteTick,
    RegimeSignal,
    TradeTick,
)

Row = tuple[Any, ...]
Item = Any  # what a batch holds: a Row, or the decoded record itself for a table with ``fields``
INT64_MAX = 9_223_372_036_854_775_807
UINT64_WRAP = 1 << 64

# column kinds understood by the COPY encoder (sinks.copybin) and the SQL type each stands for
SQL_TYPES = {
    "ts": "timestamp with time zone",
    "int8": "bigint",
    "int4": "integer",
    "bool": "boolean",
    "text": "text",
    "float8": "double precision",
    "int8[]": "ARRAY",
    "float8[]": "ARRAY",
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # a key of SQL_TYPES
    nullable: bool = False


@dataclass(frozen=True)
class TableSpec:
    """One table fed from one topic: its columns in COPY order, its natural key, and the record mapper."""

    name: str
    topic: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    convert: Callable[[Any], Any]  # record -> one item, or a list of items when ``multi``
    multi: bool = False
    # When set, column i is the record's attribute fields[i]: ``convert`` only checks the record and returns it, a
    # batch holds the records themselves, and the COPY encoder reads their attributes (no tuple per row).
    fields: tuple[str, ...] | None = None
    # Row units one item counts for in the sink's batch size and memory bound (``--batch-rows``,
    # ``--max-pending-rows``): 1 for the narrow tables; a feature vector holds ~1,500 values, ~45 KB as Python objects.
    weight: int = 1

    def items_of(self, record: Any) -> list[Any]:
        """What a batch holds for one decoded record: rows, or the record itself when ``fields`` is set (raises
        :class:`RowError` for a value out of range)."""
        out = self.convert(record)
        return out if self.multi else [out]

    def row(self, item: Any) -> Row:
        """The row tuple of a batch item (a row already, or a record of a ``fields`` table)."""
        if self.fields is None or isinstance(item, tuple):
            return item
        return tuple(getattr(item, f) for f in self.fields)

    def rows_of(self, record: Any) -> list[Row]:
        """The rows of one decoded record, as tuples in column order."""
        return [self.row(item) for item in self.items_of(record)]

    @property
    def record_type(self) -> type:
        return getattr(records, catalog.topic(self.topic).value)

    @property
    def framed(self) -> bool:
        """Whether the topic's values may be frames (JSON arrays of records), as the tick topics' are."""
        return catalog.topic(self.topic).framed

    def decoding(self) -> tuple[str, Callable[[Any], Any], Callable[[Any], Any], bool]:
        """(table, decode, convert, multi) for the sink's hot path. A framed topic's value decodes to a record or
        a list of records, and converts to the items of all of them (so ``multi``)."""
        if not self.framed:
            return self.name, codec.decoder(self.record_type).decode, self.convert, self.multi
        convert, multi = self.convert, self.multi

        def convert_frame(value: Any) -> list[Any]:
            items = [convert(r) for r in (value if type(value) is list else (value,))]
            return [item for many in items for item in many] if multi else items

        return self.name, codec.frame_decoder(self.record_type).decode, convert_frame, True

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def key_of(self, row: Row) -> Row:
        """The natural-key values of ``row``."""
        names = self.column_names
        return tuple(row[names.index(k)] for k in self.key)


def _cols(spec: str) -> tuple[Column, ...]:
    """``"ts:ts instrument_id:int8 bid_px:int8?"`` -> columns; a trailing ``?`` marks a nullable column."""
    out = []
    for item in spec.split():
        name, kind = item.split(":")
        out.append(Column(name, kind.rstrip("?"), kind.endswith("?")))
    return tuple(out)


def _check_i64(record: Any, names: Sequence[str]) -> None:
    for name in names:
        if getattr(record, name) > INT64_MAX:
            raise RowError(f"$.{name}", f"{getattr(record, name)} does not fit a signed 64-bit column")


def _signed64(value: int) -> int:
    return value - UINT64_WRAP if value > INT64_MAX else value


_BOOK_HEAD = "ts:ts instrument_id:int8 publisher_id:int4 sequence:int8 ts_recv_ns:int8 ts_event_ns:int8"
_BOOK_KEY = ("instrument_id", "ts", "publisher_id", "ts_recv_ns", "sequence")


def bbo_check(r: BboUpdate) -> BboUpdate:
    if (r.ts_recv | r.ts_event | r.bid_sz | r.ask_sz | r.bid_ct | r.ask_ct) > INT64_MAX:  # all are >= 0: one test
        _check_i64(r, ("ts_recv", "ts_event", "bid_sz", "ask_sz", "bid_ct", "ask_ct"))
    return r


def mbp10_row(r: Mbp10Snapshot) -> Row:
    _check_i64(r, ("ts_recv", "ts_event"))
    for side, levels in (("bids", r.bids), ("asks", r.asks)):
        for i, lv in enumerate(levels):
            if lv.size > INT64_MAX or lv.count > INT64_MAX:
                raise RowError(f"$.{side}[{i}]", "size or count does not fit a signed 64-bit column")
    return (r.ts_recv, r.instrument_id, r.publisher_id, r.sequence, r.ts_recv, r.ts_event,
             [lv.price for lv in r.bids], [lv.size for lv in r.bids], [lv.count for lv in r.bids],
             [lv.price for lv in r.asks], [lv.size for lv in r.asks], [lv.count for lv in r.asks],
             r.crossed, r.duplicate)


def book_trade_row(r: BookTrade) -> Row:
    _check_i64(r, ("ts_recv", "ts_event"))
    return (r.ts_recv, r.instrument_id, r.publisher_id, r.sequence, r.ts_recv, r.ts_event,
             r.price, r.size, r.side, _signed64(r.order_id), r.synthetic, r.duplicate)


def anomaly_check(r: BookAnomaly) -> BookAnomaly:
    _check_i64(r, ("ts_recv", "ts_event", "count"))
    return r


def exchange_trade_check(r: TradeTick) -> TradeTick:
    _check_i64(r, ("ts_event", "ts_recv", "size"))
    return r


def exchange_quote_check(r: QuoteTick) -> QuoteTick:
    _check_i64(r, ("ts_event", "ts_recv", "bid_sz", "ask_sz"))
    return r


# Joins a set's names before hashing; feature names never contain it (they are [a-z0-9_]), and a name that did is
# refused, so that two different name lists can never join to the same text. The SQL function feature_set_id
# (migration 0005) joins with the same character.
FEATURE_NAME_SEPARATOR = "\n"
_MAX_CACHED_SETS = 256  # distinct name lists remembered; a worker publishes one per interval, so a handful


def feature_set_id(names: Sequence[str]) -> int:
    """The ``set_id`` of an ordered list of feature names: the first 8 bytes of the MD5 of the names joined by
    :data:`FEATURE_NAME_SEPARATOR`, as a signed big-endian 64-bit integer, the same value as the SQL
    ``feature_set_id(names)`` (a fingerprint, not a security measure)."""
    digest = hashlib.md5(FEATURE_NAME_SEPARATOR.join(names).encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class FeatureRow(tuple[Any, ...]):
    """A ``feature_vectors`` row (ts, instrument, interval_ns, set_id, vals) that also carries the ordered names
    its ``set_id`` stands for, so that a store can record a set it has not seen before with the same batch."""

    names: tuple[str, ...]

    def __new__(cls, row: Row, names: tuple[str, ...]) -> FeatureRow:
        self = super().__new__(cls, row)
        self.names = names
        return self


_feature_sets: dict[tuple[str, ...], tuple[int, tuple[str, ...]]] = {}


def feature_set(names: tuple[str, ...]) -> tuple[int, tuple[str, ...]]:
    """``(set_id, names)`` for ``names``, hashed once per distinct list: every bar of a worker has the same names,
    and the returned tuple is the first one seen, so the rows of one set share it."""
    known = _feature_sets.get(names)
    if known is None:
        for name in names:
            if FEATURE_NAME_SEPARATOR in name:
                raise RowError("$.values", f"feature name {name!r} contains a line break")
        if len(_feature_sets) >= _MAX_CACHED_SETS:
            _feature_sets.clear()
        known = _feature_sets[names] = (feature_set_id(names), names)
    return known


def feature_row(r: FeatureBar) -> FeatureRow:
    """One row per bar; a warming-up feature (``None``, what the worker publishes for NaN) becomes a NULL element.
    The values are a tuple, not a list: a tuple of floats leaves the garbage collector's tracking, and a batch can
    hold thousands of these 1,483-element vectors."""
    _check_i64(r, ("ts_event", "interval_ns"))
    values = r.values
    set_id, names = feature_set(tuple(values))
    return FeatureRow((r.ts_event, r.instrument, r.interval_ns, set_id, tuple(values.values())), names)


def regime_check(r: RegimeSignal) -> RegimeSignal:
    _check_i64(r, ("ts_event", "interval_ns"))
    return r


BBO = TableSpec(
    "bbo", catalog.BOOK_BBO.name,
    _cols(_BOOK_HEAD + " bid_px:int8? bid_sz:int8 bid_ct:int8 ask_px:int8? ask_sz:int8 ask_ct:int8"
          " crossed:bool duplicate:bool"),
    _BOOK_KEY, bbo_check,
    fields=("ts_recv", "instrument_id", "publisher_id", "sequence", "ts_recv", "ts_event", "bid_px", "bid_sz",
            "bid_ct", "ask_px", "ask_sz", "ask_ct", "crossed", "duplicate"),
)
MBP10 = TableSpec(
    "mbp10", catalog.BOOK_MBP10.name,
    _cols(_BOOK_HEAD + " bid_px:int8[] bid_sz:int8[] bid_ct:int8[] ask_px:int8[] ask_sz:int8[] ask_ct:int8[]"
          " crossed:bool duplicate:bool"),
    _BOOK_KEY, mbp10_row,
)
BOOK_TRADES = TableSpec(
    "book_trades", catalog.BOOK_TRADES.name,
    _cols(_BOOK_HEAD + " price:int8 size:int8 side:text order_id:int8 synthetic:bool duplicate:bool"),
    (*_BOOK_KEY, "order_id", "side", "price", "size", "synthetic"), book_trade_row,
)
BOOK_ANOMALIES = TableSpec(
    "book_anomalies", catalog.BOOK_ANOMALIES.name,
    _cols(_BOOK_HEAD + " kind:text detail:text count:int8"),
    (*_BOOK_KEY, "kind"), anomaly_check,
    fields=("ts_recv", "instrument_id", "publisher_id", "sequence", "ts_recv", "ts_event", "kind", "detail", "count"),
)
EXCHANGE_TRADES = TableSpec(
    "exchange_trades", catalog.TICKS_TRADES.name,
    _cols("ts:ts venue:text symbol:text trade_id:text ts_event_ns:int8 ts_recv_ns:int8 price:int8 size:int8"
          " side:text"),
    ("venue", "symbol", "trade_id", "ts"), exchange_trade_check,
    fields=("ts_event", "venue", "symbol", "trade_id", "ts_event", "ts_recv", "price", "size", "side"),
)
EXCHANGE_QUOTES = TableSpec(
    "exchange_quotes", catalog.TICKS_QUOTES.name,
    _cols("ts:ts venue:text symbol:text ts_event_ns:int8 ts_recv_ns:int8 bid_px:int8? bid_sz:int8"
          " ask_px:int8? ask_sz:int8"),
    ("venue", "symbol", "ts", "ts_event_ns", "ts_recv_ns"), exchange_quote_check,
    fields=("ts_event", "venue", "symbol", "ts_event", "ts_recv", "bid_px", "bid_sz", "ask_px", "ask_sz"),
)
FEATURE_BARS = TableSpec(  # read back one row per feature through the view feature_bars
    "feature_vectors", catalog.FEATURES_BARS.name,
    _cols("ts:ts instrument:text interval_ns:int8 set_id:int8 vals:float8[]"),
    ("instrument", "interval_ns", "ts"), feature_row, weight=100,
)
FEATURE_SET_COLUMN = FEATURE_BARS.column_names.index("set_id")
REGIME_SIGNALS = TableSpec(
    "regime_signals", catalog.SIGNALS_REGIME.name,
    _cols("ts:ts instrument:text interval_ns:int8 kind:text state:text probability:float8 changed:bool"),
    ("instrument", "kind", "interval_ns", "ts"), regime_check,
    fields=("ts_event", "instrument", "interval_ns", "kind", "state", "probability", "changed"),
)

TABLES: tuple[TableSpec, ...] = (
    BBO, MBP10, BOOK_TRADES, BOOK_ANOMALIES, EXCHANGE_TRADES, EXCHANGE_QUOTES, FEATURE_BARS, REGIME_SIGNALS,
)
BY_NAME: dict[str, TableSpec] = {t.name: t for t in TABLES}
BY_TOPIC: dict[str, TableSpec] = {t.topic: t for t in TABLES}
