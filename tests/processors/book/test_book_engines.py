"""Differential tests: the compiled engine against the pure-Python reference, record by record.

Random streams (every rule, policy, snapshot, F_TOB, replay and anomaly the generator can reach) and the real
files go through both engines; after every record they must agree on the result, the BBO, every level and queue,
the resting orders and the stats, and at the end on ``to_state()`` (as structs and as JSON bytes) and on every
log line.
"""

from __future__ import annotations

import copy
import logging
import pickle
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.book import FastBook, Market, PureBook
from tests.processors.book import bookdata as bd
from tests.processors.book.factory import INST, PUB, px
from topics.records import F_BAD_TS_RECV, F_LAST, F_MAYBE_BAD_BOOK, F_SNAPSHOT, F_TOB, UNDEF_PRICE, MboRecord

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(FastBook is None, reason="the compiled book engine is not built on this machine"),
]

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Row = tuple[str, str, int, int, int, int, int, int, int, int]  # apply_fields arguments


@st.composite
def rows(draw: st.DrawFn, max_ops: int = 80) -> list[Row]:
    """apply_fields arguments: every action, odd letters, F_TOB, snapshots, channels, replays, unsequenced."""
    out: list[Row] = []
    seq, ts, oid = 1_000, 1_700_000_000_000_000_000, 1
    for _ in range(draw(st.integers(1, max_ops))):
        kind = draw(st.sampled_from(["add"] * 6 + ["cancel"] * 3 + ["modify"] * 3 + [
            "trade", "fill", "clear", "tob", "snapshot", "bad", "odd", "replay", "replay", "unsequenced"]))
        flags = draw(st.sampled_from([F_LAST, F_LAST, 0, F_LAST | F_MAYBE_BAD_BOOK, F_BAD_TS_RECV]))
        if draw(st.booleans()):
            seq += 1
        ts += draw(st.sampled_from([0, 1, 1, 5]))
        chan = draw(st.sampled_from([0, 0, 0, 1]))
        side = draw(st.sampled_from(["B", "A"]))
        price, size = px(draw(st.integers(-4, 4))), draw(st.integers(0, 6))
        known = draw(st.integers(1, max(1, oid)))
        if kind == "add":
            out.append(("A", side, price, max(size, 1), oid, flags, seq, chan, ts, ts - 9))
            oid += 1
        elif kind in ("cancel", "modify"):
            out.append((kind[0].upper(), side, price, size, known, flags, seq, chan, ts, ts - 9))
        elif kind in ("trade", "fill"):
            out.append((kind[0].upper(), draw(st.sampled_from("ABNX")), price, size, known, flags, seq, chan, ts, ts))
        elif kind == "clear":
            out.append(("R", "N", UNDEF_PRICE, 0, 0, flags, 0, chan, ts, ts))
        elif kind == "tob":
            top = draw(st.sampled_from([price, UNDEF_PRICE]))
            out.append(("A", side, top, size, 0, F_LAST | F_TOB, seq, chan, ts, ts))
        elif kind == "snapshot":
            out.extend(_snapshot(draw, seq, ts, chan))
        elif kind == "bad":
            out.append((draw(st.sampled_from("ACM")), "N", price, 1, known, flags, seq, chan, ts, ts))
        elif kind == "odd":
            out.append((draw(st.sampled_from(["X", "", "AB", "é"])), draw(st.sampled_from(["B", "", "BA"])), price,
                        size, known, flags, seq, chan, ts, ts))
        elif kind == "unsequenced":
            out.append(("A", side, price, max(size, 1), oid, flags, 0, chan, ts, ts))
            oid += 1
        elif out:
            start = draw(st.integers(0, len(out) - 1))
            out.extend(out[start:draw(st.integers(start, len(out)))])
    return out


def _snapshot(draw: st.DrawFn, seq: int, ts: int, chan: int) -> list[Row]:
    recs: list[Row] = []
    if draw(st.booleans()):
        recs.append(("R", "N", UNDEF_PRICE, 0, 0, F_SNAPSHOT, 0, chan, ts, ts))
    orders = draw(st.lists(st.tuples(st.sampled_from("BA"), st.integers(-3, 3), st.integers(1, 4),
                                     st.integers(1, 30)), min_size=1, max_size=6))
    for i, (side, tick, size, oid) in enumerate(orders):
        last = F_LAST if i == len(orders) - 1 and draw(st.booleans()) else 0
        recs.append(("A", side, px(tick), size, oid, F_SNAPSHOT | last, seq, chan, ts, ts))
    return recs


def view(book: Any) -> tuple[object, ...]:
    """Everything a caller can read from a book."""
    sides = [(book.levels(s, 10_000), [book.queue(s, lv.price) for lv in book.levels(s, 10_000)],
              [book.depth_of(s, lv.price) for lv in book.levels(s, 10_000)]) for s in ("B", "A")]
    orders = [book.order(oid) for oid in range(0, 40)]
    return book.bbo(), sides, orders, book.order_count, book.is_crossed(), book.stats


def feed_both(rows_: list[Row], policy: str, max_pending: int = 100_000,
              trades_every: int = 0) -> tuple[PureBook, Any]:
    pure = PureBook(PUB, INST, policy, max_pending_trades=max_pending)
    fast = FastBook(PUB, INST, policy, max_pending_trades=max_pending)
    for i, row in enumerate(rows_):
        assert fast.apply_fields(*row) == pure.apply_fields(*row), (i, row)
        assert view(fast) == view(pure), (i, row)
        if trades_every and i % trades_every == 0:
            assert fast.take_trades() == pure.take_trades()
    return pure, fast


def assert_same_state(pure: PureBook, fast: Any) -> None:
    assert fast.to_state() == pure.to_state()
    assert msgspec.json.encode(fast.to_state()) == msgspec.json.encode(pure.to_state())
    # the checkpoint form (the compiled engine's sides pre-encoded in C) writes the very same MessagePack bytes
    reference = msgspec.msgpack.encode(pure.to_state())
    for book in (pure, fast):
        packed = msgspec.msgpack.encode(book.checkpoint_state())
        assert packed == reference
        assert msgspec.msgpack.decode(packed, type=type(pure.to_state())) == pure.to_state()


@PROPS
@given(rows(), st.sampled_from(["keep", "match", "drop-stale"]), st.sampled_from([100_000, 3]),
       st.sampled_from([0, 7]))
def test_engines_agree_on_random_streams(rows_: list[Row], policy: str, max_pending: int, every: int) -> None:
    pure, fast = feed_both(rows_, policy, max_pending, every)

    assert_same_state(pure, fast)
    assert fast.take_trades() == pure.take_trades()


@PROPS
@given(rows(), st.data())
def test_engines_agree_after_restoring_each_others_state(rows_: list[Row], data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(rows_)))
    policy = data.draw(st.sampled_from(["keep", "match", "drop-stale"]))
    pure, fast = feed_both(rows_[:cut], policy)
    encoded = msgspec.msgpack.encode(pure.to_state())
    state = msgspec.msgpack.decode(encoded, type=type(pure.to_state()))

    pure2, fast2 = PureBook.from_state(state), FastBook.from_state(fast.to_state())
    cross = FastBook.from_state(state)
    for row in rows_[cut:]:
        results = {pure2.apply_fields(*row), fast2.apply_fields(*row), cross.apply_fields(*row)}
        assert len(results) == 1
        assert view(fast2) == view(pure2) == view(cross)
    assert_same_state(pure2, fast2)
    assert_same_state(pure2, cross)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage()))


def log_lines(cls: Any, rows_: list[Row], policy: str) -> list[tuple[str, str]]:
    handler = Lines()
    log = logging.getLogger("processors.book")
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.DEBUG)
    try:
        book = cls(PUB, INST, policy)
        for row in rows_:
            book.apply_fields(*row)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    return handler.lines


@settings(max_examples=100, deadline=None)
@given(rows(), st.sampled_from(["keep", "match", "drop-stale"]))
def test_engines_write_the_same_log_lines(rows_: list[Row], policy: str) -> None:
    assert log_lines(FastBook, rows_, policy) == log_lines(PureBook, rows_, policy)


def points(book: Any, records: tuple[MboRecord, ...]) -> Iterator[tuple[int, object]]:
    for i, r in enumerate(records):
        if book.apply(r):
            yield i, book.bbo()


@pytest.mark.parametrize("policy", ["keep", "match", "drop-stale"])
def test_engines_agree_at_every_consistency_point_of_esh4(shared_data: object, policy: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="processors.book")
    records = bd.mbo_records(bd.ESH4_1225)
    pure, fast = PureBook(1, 17077, policy), FastBook(1, 17077, policy)

    assert list(points(fast, records)) == list(points(pure, records))
    assert fast.stats == pure.stats
    assert_same_state(pure, fast)


@pytest.mark.parametrize("name", bd.ALL_MBO_FILES)
def test_engines_agree_on_every_real_file(shared_data: object, name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="processors.book")
    records = bd.mbo_records(name)
    pure, fast = Market(book_cls=PureBook), Market(book_cls=FastBook)

    for r in records:
        assert fast.apply(r) == pure.apply(r)
    assert fast.to_state() == pure.to_state()
    assert [b.take_trades() for b in fast] == [b.take_trades() for b in pure]


@settings(max_examples=50, deadline=None)
@given(rows())
def test_books_pickle_and_copy_to_identical_books(rows_: list[Row]) -> None:
    pure, fast = feed_both(rows_, "keep")

    for book in (pure, fast):
        for twin in (pickle.loads(pickle.dumps(book)), copy.deepcopy(book)):
            assert type(twin) is type(book)
            assert twin.to_state() == book.to_state()
            assert view(twin) == view(book)


def test_queries_out_of_the_integer_range_find_nothing() -> None:
    for cls in (PureBook, FastBook):
        book = cls(PUB, INST)
        assert (book.depth_of("B", 1 << 70), book.queue("A", -(1 << 70)), book.order(-1)) == (None, [], None)


@settings(max_examples=100, deadline=None)
@given(rows())
def test_a_kept_stats_reference_stays_live(rows_: list[Row]) -> None:
    pure, fast = PureBook(PUB, INST), FastBook(PUB, INST)
    kept_pure, kept_fast = pure.stats, fast.stats

    for row in rows_:
        pure.apply_fields(*row)
        fast.apply_fields(*row)
        assert kept_fast == kept_pure
    assert kept_fast is fast.stats
    assert kept_fast == kept_pure


def test_checkpoint_state_encodes_every_integer_width_as_msgpack_does() -> None:
    # each value sits at an edge of a MessagePack integer format (fixint, 8, 16, 32 and 64 bits, signed or not)
    edges = [1, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**63 - 1]
    negative = [-1, -32, -33, -128, -129, -32_768, -32_769, -2**31, -2**31 - 1, -2**63 + 1]
    pure, fast = PureBook(PUB, INST), FastBook(PUB, INST)
    rows = [("A", "B", -10**12 + i, size, 2**64 - 1 - i, F_LAST) for i, size in enumerate(edges)]
    rows += [("A", "A", price, 7, 1_000 + i, F_LAST) for i, price in enumerate([*edges, 10**15])]
    rows += [("A", "B", price, 3, 5_000 + i, F_LAST) for i, price in enumerate(negative)]
    rows += [("A", "B", 42, 1, oid, F_LAST) for oid in [*edges, 2**63]]
    for seq, row in enumerate(rows, start=1):
        assert pure.apply_fields(*row, seq, 0, seq, seq) == fast.apply_fields(*row, seq, 0, seq, seq)
    assert_same_state(pure, fast)
