"""Output framing: the records of one key of a framed topic leave as one message, in order, within bounds."""

from __future__ import annotations

import msgspec
import pytest

from streams.output import frame_outputs
from streams.publisher import OutputTopics
from topics.codec import decode_records, encode
from topics.records import BboUpdate, BookAnomaly

pytestmark = pytest.mark.unit

TOPICS = OutputTopics.with_prefix("t.")
FRAMED = TOPICS.framed()


def bbo(instrument: int, seq: int) -> bytes:
    return encode(BboUpdate(publisher_id=1, instrument_id=instrument, ts_event=seq, ts_recv=seq, sequence=seq,
                            bid_px=100, bid_sz=1, bid_ct=1, ask_px=101, ask_sz=2, ask_ct=1))


def anomaly(instrument: int, seq: int) -> bytes:
    return encode(BookAnomaly(publisher_id=1, instrument_id=instrument, ts_event=seq, ts_recv=seq, sequence=seq,
                              kind="gap", detail="d", count=1))


def sequences(value: bytes) -> list[int]:
    return [r.sequence for r in decode_records(BboUpdate, value)]


def test_the_bbo_and_trade_topics_are_framed_and_the_others_not() -> None:
    assert {"t.book.bbo", "t.book.trades"} == FRAMED


def test_each_keys_records_become_one_frame_in_their_order() -> None:
    # Arrange: two instruments' BBO updates interleaved, with an anomaly between them
    outputs = [(TOPICS.bbo, b"1", bbo(1, 10)), (TOPICS.bbo, b"2", bbo(2, 20)), (TOPICS.anomalies, b"1", anomaly(1, 11)),
               (TOPICS.bbo, b"1", bbo(1, 12)), (TOPICS.bbo, b"2", bbo(2, 21)), (TOPICS.bbo, b"1", bbo(1, 13))]

    # Act
    framed = frame_outputs(outputs, FRAMED)

    # Assert: the anomaly as it was; one message per instrument holding its updates in order
    assert framed[0] == (TOPICS.anomalies, b"1", anomaly(1, 11))
    assert [(t, k, sequences(v)) for t, k, v in framed[1:]] == [
        (TOPICS.bbo, b"1", [10, 12, 13]), (TOPICS.bbo, b"2", [20, 21])]
    assert msgspec.json.decode(framed[1][2])[0]["sequence"] == 10  # a plain JSON array of the records


def test_one_record_stays_a_plain_record() -> None:
    framed = frame_outputs([(TOPICS.bbo, b"1", bbo(1, 10))], FRAMED)

    assert framed == [(TOPICS.bbo, b"1", bbo(1, 10))]


def test_a_frame_is_cut_at_the_record_bound() -> None:
    outputs = [(TOPICS.bbo, b"1", bbo(1, seq)) for seq in range(7)]

    framed = frame_outputs(outputs, FRAMED, max_records=3)

    assert [sequences(v) for _, _, v in framed] == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_frame_is_cut_at_the_byte_bound_and_a_big_record_goes_alone() -> None:
    # Arrange: room for two records per frame: "[", two records, a comma and "]"
    size = len(bbo(1, 100))
    bound = 2 * size + 3
    outputs = [(TOPICS.bbo, b"1", bbo(1, seq)) for seq in range(100, 105)]

    # Act
    framed = frame_outputs(outputs, FRAMED, max_bytes=bound)
    alone = frame_outputs(outputs[:2], FRAMED, max_bytes=size // 2)

    # Assert
    assert [sequences(v) for _, _, v in framed] == [[100, 101], [102, 103], [104]]
    assert max(len(v) for _, _, v in framed) == bound
    assert [sequences(v) for _, _, v in alone] == [[100], [101]]


def test_without_framed_topics_the_outputs_pass_as_they_are() -> None:
    outputs = [(TOPICS.bbo, b"1", bbo(1, 10)), (TOPICS.bbo, b"1", bbo(1, 11))]

    assert frame_outputs(outputs, frozenset()) == outputs
