"""ResumeFilter: after a drop, a replay from the last published ts_event yields each record exactly once."""

from __future__ import annotations

import random
import struct

import pytest

from producers.live.resume import ResumeFilter

pytestmark = pytest.mark.unit


def rec(instrument_id: int, ts_event: int, order_id: int, sequence: int = 7) -> tuple[int, int, bytes]:
    """(instrument_id, ts_event, 56 bytes standing for the record) - only identity matters to the filter."""
    raw = struct.pack("<BBHIQQI", 14, 0xA0, 1, instrument_id, ts_event, order_id, sequence).ljust(56, b"\0")
    return instrument_id, ts_event, raw


def published_through_drop(stream: list[tuple[int, int, bytes]], cut: int) -> tuple[list[bytes], ResumeFilter]:
    """Publish ``stream[:cut]``, drop, replay from the resume start as an intraday replay would (ts_event >=
    start, in feed order); returns everything published, in order."""
    f = ResumeFilter()
    out = [raw for inst, ts, raw in stream[:cut] if f.admit(inst, ts, raw)]
    start = f.resume_start()
    f.resume()
    replay = [r for r in stream if start is None or r[1] >= start]
    out += [raw for inst, ts, raw in replay if f.admit(inst, ts, raw)]
    return out, f


def test_a_drop_inside_an_event_sharing_ts_event_and_sequence_loses_nothing() -> None:
    # Arrange: one event of five records with the same ts_event and sequence (as CME events are), cut after two
    stream = [rec(1, 100, 1), *(rec(1, 200, oid) for oid in range(10, 15)), rec(1, 300, 20)]

    # Act
    out, f = published_through_drop(stream, cut=3)

    # Assert
    assert out == [raw for _, _, raw in stream]
    assert f.duplicates == 2  # the two records of the event that were replayed


def test_identical_records_at_the_boundary_count_copies() -> None:
    # Arrange: the same bytes twice at one ts_event (a feed may repeat a record), the drop between the copies
    same = rec(1, 200, 10)
    stream = [rec(1, 100, 1), same, same, rec(1, 300, 2)]

    # Act
    out, f = published_through_drop(stream, cut=2)

    # Assert
    assert out == [raw for _, _, raw in stream]
    assert f.duplicates == 1


def test_resume_start_is_the_earliest_last_ts_event_over_instruments() -> None:
    # Arrange
    f = ResumeFilter()
    for inst, ts, raw in (rec(1, 100, 1), rec(2, 150, 2), rec(1, 180, 3)):
        f.admit(inst, ts, raw)

    # Act
    start = f.resume_start()

    # Assert
    assert start == 150


def test_nothing_published_means_no_resume_start() -> None:
    assert ResumeFilter().resume_start() is None


def test_instruments_met_only_after_the_drop_pass_whole() -> None:
    # Arrange: instrument 2 appears only after the cut, at the boundary timestamp of instrument 1
    stream = [rec(1, 100, 1), rec(1, 200, 2), rec(2, 200, 3), rec(2, 250, 4), rec(1, 300, 5)]

    # Act
    out, _ = published_through_drop(stream, cut=2)

    # Assert
    assert out == [raw for _, _, raw in stream]


def test_without_a_resume_repeated_bytes_are_new_records() -> None:
    # Arrange: outside a resumption the filter never drops anything, even a repeated record
    f = ResumeFilter()
    _, _, raw = rec(1, 100, 1)

    # Act
    admitted = [f.admit(1, 100, raw) for _ in range(3)]

    # Assert
    assert admitted == [True, True, True]
    assert f.duplicates == 0


@pytest.mark.parametrize("seed", range(20))
def test_random_feeds_and_cuts_are_reassembled_exactly(seed: int) -> None:
    # Arrange: several instruments, clustered timestamps (many records per ts_event), a cut anywhere
    rnd = random.Random(seed)
    ts = 1_000
    stream = []
    for oid in range(400):
        ts += rnd.choice((0, 0, 0, 1, 5))
        stream.append(rec(rnd.randrange(1, 4), ts, oid, sequence=ts))
    cut = rnd.randrange(len(stream) + 1)

    # Act
    out, _ = published_through_drop(stream, cut)

    # Assert
    assert out == [raw for _, _, raw in stream]
