"""The framer: never splits an F_LAST event, bounded by count and linger, per-instrument order kept."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.framing import ColumnBlock, Framer, frame_key, frame_problem
from topics.records import F_LAST, Action, MboFrame, MboRecord

pytestmark = pytest.mark.unit


def rec(inst: int, seq: int, last: bool = True, pub: int = 1, action: Action = "A") -> MboRecord:
    return MboRecord(
        ts_recv=1_000 + seq, ts_event=900 + seq, publisher_id=pub, instrument_id=inst, action=action, side="B",
        price=100 * 10**9, size=1, order_id=seq, flags=F_LAST if last else 0, sequence=seq,
    )


def event(inst: int, start_seq: int, length: int) -> list[MboRecord]:
    """``length`` records of one instrument, the last flagged F_LAST."""
    return [rec(inst, start_seq + i, last=i == length - 1) for i in range(length)]


def records_of(frames: list[MboFrame]) -> list[MboRecord]:
    return [r for f in frames for r in f.records()]


def check_frames(frames: list[MboFrame], max_records: int, flushed_tail: bool = True) -> None:
    """Every frame is one instrument, ends on F_LAST (but a trailing flush), and is small or one event."""
    last_of: dict[int, int] = {}
    for i, f in enumerate(frames):
        last_of[f.instrument_id] = i
    for i, f in enumerate(frames):
        assert frame_problem(f) is None
        ends_event = bool(f.flags[-1] & F_LAST)
        if not ends_event:
            assert flushed_tail and last_of[f.instrument_id] == i, "only the final flush may end mid-event"
        if len(f) > max_records:
            assert not any(flag & F_LAST for flag in f.flags[:-1]), "an oversized frame holds exactly one event"


# events: (instrument, length) pairs in arrival order
events_strategy = st.lists(st.tuples(st.integers(1, 4), st.integers(1, 40)), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(events=events_strategy, max_records=st.integers(1, 64), chunk=st.integers(1, 50), tail=st.integers(0, 5))
def test_frames_keep_every_record_in_order_and_never_split_an_event(
    events: list[tuple[int, int]], max_records: int, chunk: int, tail: int,
) -> None:
    stream: list[MboRecord] = []
    seq = 0
    for inst, length in events:
        stream += event(inst, seq, length)
        seq += length
    stream += [rec(1, seq + i, last=False) for i in range(tail)]  # an unfinished event at the end of input
    framer = Framer(max_records=max_records, linger_s=10.0)
    frames: list[MboFrame] = []
    for i in range(0, len(stream), chunk):
        frames += framer.add_records(stream[i : i + chunk], now=0.0)
    frames += framer.flush()
    check_frames(frames, max_records)
    per_inst_in: dict[int, list[MboRecord]] = defaultdict(list)
    for r in stream:
        per_inst_in[r.instrument_id].append(r)
    per_inst_out: dict[int, list[MboRecord]] = defaultdict(list)
    for r in records_of(frames):
        per_inst_out[r.instrument_id].append(r)
    assert per_inst_out == per_inst_in


def test_full_frames_go_out_at_once_partial_ones_wait_for_linger() -> None:
    framer = Framer(max_records=10, linger_s=0.005)
    stream = [r for k in range(25) for r in event(7, 2 * k, 2)]  # 25 events of 2 records
    frames = framer.add_records(stream[:24], now=0.0)
    assert [len(f) for f in frames] == [10, 10]
    assert framer.pending_records == 4
    assert framer.poll(now=0.004) == []  # linger not yet over
    assert framer.next_deadline() == pytest.approx(0.005)
    frames = framer.poll(now=0.005)
    assert [len(f) for f in frames] == [4]
    assert framer.pending_records == 0


def test_quiet_feed_sends_one_event_per_frame() -> None:
    framer = Framer(max_records=250, linger_s=0.005)
    frames: list[MboFrame] = []
    for k in range(5):  # an event every 10 ms, polled in between
        now = k * 0.010
        frames += framer.add_records(event(3, 10 * k, 3), now=now)
        frames += framer.poll(now=now + 0.006)
    assert [len(f) for f in frames] == [3] * 5
    assert all(f.flags[-1] & F_LAST for f in frames)


def test_zero_linger_sends_complete_events_immediately_and_keeps_unfinished_ones() -> None:
    framer = Framer(max_records=250, linger_s=0.0)
    frames = framer.add_records([*event(1, 0, 2), rec(1, 2, last=False)], now=0.0)
    assert [len(f) for f in frames] == [2]
    assert framer.pending_records == 1
    assert framer.poll(now=100.0) == []  # an unfinished event never goes out on linger
    frames = framer.add_records([rec(1, 3, last=True)], now=100.0)
    assert [f.sequence for f in frames] == [[2, 3]]


def test_an_event_longer_than_the_maximum_is_sent_whole() -> None:
    framer = Framer(max_records=4, linger_s=1.0)
    frames = framer.add_records([*event(1, 0, 2), *event(1, 2, 9), *event(1, 11, 1)], now=0.0)
    frames += framer.flush()
    assert [len(f) for f in frames] == [2, 9, 1]


def test_interleaved_instruments_have_their_own_buffers() -> None:
    framer = Framer(max_records=3, linger_s=1.0)
    stream = []
    for k in range(6):
        stream += [rec(1, k), rec(2, 100 + k)]
    frames = framer.add_records(stream, now=0.0)
    assert [(f.instrument_id, f.sequence) for f in frames] == [(1, [0, 1, 2]), (1, [3, 4, 5]), (2, [100, 101, 102]),
                                                                (2, [103, 104, 105])]
    assert {frame_key(f) for f in frames} == {b"1", b"2"}


def test_publishers_with_the_same_instrument_id_are_kept_apart() -> None:
    framer = Framer(max_records=10, linger_s=0.0)
    frames = framer.add_records([rec(5, 0, pub=1), rec(5, 1, pub=2)], now=0.0)
    assert sorted((f.publisher_id, f.sequence) for f in frames) == [(1, [0]), (2, [1])]


def test_event_limit_splits_a_runaway_event_and_counts_it() -> None:
    framer = Framer(max_records=2, linger_s=0.0, event_limit=5)
    frames = framer.add_records([rec(1, i, last=False) for i in range(6)], now=0.0)
    assert [len(f) for f in frames] == [6]
    assert framer.split_events == 1


def test_blocks_from_records_and_symbols() -> None:
    blocks = ColumnBlock.from_records([rec(1, 0), rec(2, 1), rec(1, 2, last=False)], symbols={1: "ESH4"})
    assert [(b.instrument_id, len(b), b.symbol, b.last) for b in blocks] == [(1, 2, "ESH4", b"\x01\x00"),
                                                                             (2, 1, None, b"\x01")]
    framer = Framer(max_records=1, linger_s=0.0)
    frames = framer.add(blocks[0], now=0.0) + framer.flush()
    assert [f.symbol for f in frames] == ["ESH4", "ESH4"]


def test_frame_problem_names_bad_letters_and_lengths() -> None:
    good = MboFrame.from_records(event(1, 0, 2))
    assert frame_problem(good) is None
    bad_action = MboFrame(**{**_fields(good), "action": "AX"})
    assert frame_problem(bad_action) == "$.action[1]: 'X' is not one of ACFMNRT"
    short = MboFrame(**{**_fields(good), "price": [1]})
    assert frame_problem(short) == "$.price: 1 values, expected 2 (one per action)"


def _fields(frame: MboFrame) -> dict[str, Any]:
    return {name: getattr(frame, name) for name in frame.__struct_fields__}


def test_framer_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_records"):
        Framer(max_records=0)
    with pytest.raises(ValueError, match="linger_s"):
        Framer(linger_s=-1)
