"""Property tests: the book against naive models over generated streams, and state round trips."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.book import Book, BookState
from tests.processors.book.factory import INST, PUB, px
from tests.processors.book.naive import NaiveBook, NaiveMatcher, drop_stale_naive
from topics.records import F_LAST, UNDEF_PRICE, MboRecord

pytestmark = pytest.mark.unit

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _quiet_book_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="processors.book")


@dataclass
class Stream:
    """Records to feed, each marked True when it replays an earlier one (the model must skip it)."""

    items: list[tuple[MboRecord, bool]] = field(default_factory=list)
    originals: list[MboRecord] = field(default_factory=list)
    seq: int = 1_000
    ts: int = 1_700_000_000_000_000_000

    def emit(self, action: str, side: str, price: int, size: int, oid: int, flags: int, new_seq: bool) -> None:
        if new_seq or not self.originals:
            self.seq += 1
        self.ts += 1
        self.push(self.record(action, side, price, size, oid, flags, 0 if action == "R" else self.seq, self.ts))

    def record(self, action: str, side: str, price: int, size: int, oid: int, flags: int, seq: int,
               ts: int) -> MboRecord:
        return MboRecord(
            ts_recv=ts, ts_event=ts - 7, publisher_id=PUB, instrument_id=INST, action=action,  # type: ignore[arg-type]
            side=side, price=price, size=size, order_id=oid, flags=flags, sequence=seq,  # type: ignore[arg-type]
        )

    def push(self, rec: MboRecord) -> None:
        self.items.append((rec, False))
        self.originals.append(rec)

    def replay_from_frame_start(self, start: int, stop: int) -> None:
        """Re-send originals[start:stop]; replays begin where a frame begins (after an F_LAST record)."""
        self.items.extend((r, True) for r in self.originals[start:stop])

    def frame_starts(self) -> list[int]:
        return [i for i, r in enumerate(self.originals) if i == 0 or self.originals[i - 1].flags & F_LAST]


sides = st.sampled_from(["B", "A"])
ticks = st.integers(-4, 4)


@st.composite
def streams(draw: st.DrawFn, max_ops: int = 50) -> Stream:
    s = Stream()
    next_oid = 1
    for _ in range(draw(st.integers(1, max_ops))):
        kind = draw(st.sampled_from(
            ["add"] * 5 + ["cancel"] * 3 + ["modify"] * 3 + ["readd", "unknown", "clear", "tfn", "bad", "fills",
                                                           "replay", "replay"]
        ))
        flags = F_LAST if draw(st.integers(0, 3)) else 0
        new_seq = draw(st.booleans())
        known = list(range(1, next_oid)) or [1]
        if kind == "add":
            s.emit("A", draw(sides), px(draw(ticks)), draw(st.integers(1, 5)), next_oid, flags, new_seq)
            next_oid += 1
        elif kind == "readd":
            s.emit("A", draw(sides), px(draw(ticks)), draw(st.integers(1, 5)), draw(st.sampled_from(known)),
                   flags, new_seq)
        elif kind == "cancel":
            s.emit("C", draw(sides), px(0), draw(st.integers(1, 6)), draw(st.sampled_from(known)), flags, new_seq)
        elif kind == "modify":
            s.emit("M", draw(sides), px(draw(ticks)), draw(st.integers(0, 6)), draw(st.sampled_from(known)),
                   flags, new_seq)
        elif kind == "unknown":
            action = draw(st.sampled_from(["C", "M"]))
            s.emit(action, draw(sides), px(draw(ticks)), draw(st.integers(1, 5)), 10_000 + next_oid, flags, new_seq)
            next_oid += 1
        elif kind == "clear":
            s.emit("R", "N", UNDEF_PRICE, 0, 0, flags, True)
        elif kind == "tfn":
            s.emit(draw(st.sampled_from(["T", "F", "N"])), draw(st.sampled_from(["A", "B", "N"])),
                   px(draw(ticks)), draw(st.integers(1, 5)), draw(st.sampled_from(known)), flags, new_seq)
        elif kind == "bad":
            s.emit(draw(st.sampled_from(["A", "C", "M"])), "N", px(0), 1, draw(st.sampled_from(known)), flags,
                   new_seq)
        elif kind == "fills":
            _identical_fills(s, draw(st.sampled_from(known)), draw(st.integers(1, 3)))
        else:
            start = draw(st.sampled_from(s.frame_starts())) if s.originals else 0
            s.replay_from_frame_start(start, draw(st.integers(start, len(s.originals))))
    return s


def _identical_fills(s: Stream, resting: int, size: int) -> None:
    """Two aggressors fill one resting order for the same size: two byte-identical F records in one sequence."""
    s.seq += 1
    s.ts += 1
    fill = s.record("F", "A", px(1), size, resting, 0, s.seq, s.ts)
    for aggressor in (90_001, 90_002):
        s.push(s.record("T", "B", px(1), size, aggressor, 0, s.seq, s.ts))
        s.push(fill)


def assert_same_book(book: Book, model: NaiveBook) -> None:
    assert book.bbo() == model.bbo()
    for side in ("B", "A"):
        levels = model.levels(side)
        assert book.levels(side, depth=1_000) == levels
        for i, level in enumerate(levels):
            assert book.queue(side, level.price) == model.queue(side, level.price)
            assert book.depth_of(side, level.price) == i
    assert book.order_count == len(model.orders)
    for o in model.orders:
        assert book.order(o.order_id) == (o.side, o.price, o.size)


@PROPS
@given(streams())
def test_book_equals_the_naive_model_after_every_record(book_cls: type[Book], stream: Stream) -> None:
    book, model = book_cls(PUB, INST), NaiveBook()

    for rec, is_replay in stream.items:
        book.apply(rec)
        if not is_replay:
            model.apply(rec)
        assert_same_book(book, model)

    assert book.stats.duplicates_skipped == sum(is_replay for _, is_replay in stream.items)
    assert book.stats.crossings <= book.stats.consistency_points


@PROPS
@given(streams(), st.data())
def test_state_round_trip_gives_an_identical_book(book_cls: type[Book], stream: Stream, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(stream.items)))
    original = book_cls(PUB, INST)
    for rec, _ in stream.items[:cut]:
        original.apply(rec)

    encoded = msgspec.json.encode(original.to_state())
    restored = book_cls.from_state(msgspec.json.decode(encoded, type=BookState))

    assert restored.to_state() == original.to_state()
    for rec, _ in stream.items[cut:]:
        assert restored.apply(rec) == original.apply(rec)
    assert restored.to_state() == original.to_state()
    assert msgspec.json.encode(restored.to_state()) == msgspec.json.encode(original.to_state())


adds = st.lists(st.tuples(sides, st.integers(-3, 3), st.integers(1, 6), st.booleans()), min_size=1, max_size=40)


def add_records(draws: list[tuple[str, int, int, bool]]) -> list[MboRecord]:
    s = Stream()
    for oid, (side, tick, size, last) in enumerate(draws, start=1):
        s.emit("A", side, px(tick), size, oid, F_LAST if last else 0, True)
    return s.originals


@PROPS
@given(adds)
def test_match_policy_equals_continuous_matching_at_every_consistency_point(book_cls: type[Book], draws: list) -> None:
    book, engine = book_cls(PUB, INST, "match"), NaiveMatcher()

    for rec in add_records(draws):
        engine.add(rec.side, rec.price, rec.size, rec.order_id)
        if book.apply(rec):
            assert not book.is_crossed()
            assert_same_book(book, engine.book)
            fills = [(t.price, t.size, t.side, t.order_id) for t in book.take_trades()]
            assert sorted(fills) == sorted(engine.fills)
            engine.fills.clear()


@PROPS
@given(adds)
def test_drop_stale_policy_equals_its_definition_at_every_consistency_point(book_cls: type[Book], draws: list) -> None:
    book, model = book_cls(PUB, INST, "drop-stale"), NaiveBook()

    for rec in add_records(draws):
        model.apply(rec)
        if book.apply(rec):
            drop_stale_naive(model)
            assert not book.is_crossed()
            assert_same_book(book, model)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams(max_ops=200))
def test_book_equals_the_naive_model_on_long_streams(book_cls: type[Book], stream: Stream) -> None:
    book, model = book_cls(PUB, INST), NaiveBook()

    for rec, is_replay in stream.items:
        book.apply(rec)
        if not is_replay:
            model.apply(rec)
        assert_same_book(book, model)

    assert book.stats.duplicates_skipped == sum(is_replay for _, is_replay in stream.items)
