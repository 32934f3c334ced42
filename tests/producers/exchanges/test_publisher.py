"""The publisher's frames: one Kafka message per run of one venue:symbol's records, order kept per key, bounded in
records and bytes; a full librdkafka queue leaves exactly the records not handed over."""

from __future__ import annotations

from collections import defaultdict

import msgspec
import pytest

from producers.exchanges import publisher as pub
from producers.exchanges.base import Record, VenueStats
from producers.exchanges.publisher import KafkaPublisher, LatencyHistogram, frames_of
from topics import codec
from topics.records import QuoteTick, TradeTick

pytestmark = pytest.mark.unit

TOPIC_OF: dict[type, str] = {TradeTick: "trades", QuoteTick: "quotes"}
TOPIC_OF_NAMES = {"TradeTick": "t.trades", "QuoteTick": "t.quotes", "L2Update": "t.book"}
NO_BROKER = "127.0.0.1:1"
QUIET = {"log_level": 0}  # librdkafka logs every refused connection to the absent broker otherwise


def trade(venue: str, symbol: str, n: int) -> TradeTick:
    return TradeTick(venue=venue, symbol=symbol, ts_event=n, ts_recv=1_700_000_000_000_000_000 + n * 1_000_000,
                     price=100_000_000_000 + n, size=1, side="B", trade_id=str(n))


def quote(venue: str, symbol: str, n: int) -> QuoteTick:
    return QuoteTick(venue=venue, symbol=symbol, ts_event=n, ts_recv=1_700_000_000_000_000_000 + n * 1_000_000,
                     bid_px=99, bid_sz=1, ask_px=101, ask_sz=1)


def key(r: Record) -> bytes:
    return f"{r.venue}:{r.symbol}".encode()


def mixed(n: int) -> list[Record]:
    out: list[Record] = []
    for i in range(n):
        out.append(trade("okx", ("BTC", "ETH")[i % 2], i))
        out.append(quote("okx", "BTC", i))
        out.append(trade("kraken", "BTC", i))
    return out


def test_frames_hold_one_topic_and_key_each_in_arrival_order() -> None:
    batch = mixed(50)

    frames = frames_of(batch, TOPIC_OF, key, max_records=1_000)

    assert [(f.topic, f.key) for f in frames] == [
        ("trades", b"okx:BTC"), ("quotes", b"okx:BTC"), ("trades", b"kraken:BTC"), ("trades", b"okx:ETH")]
    for f in frames:
        assert all(TOPIC_OF[type(r)] == f.topic and key(r) == f.key for r in f.records)
        assert f.records == [r for r in batch if TOPIC_OF[type(r)] == f.topic and key(r) == f.key]


def test_a_long_run_of_one_key_is_cut_at_the_record_bound() -> None:
    batch: list[Record] = [trade("okx", "BTC", i) for i in range(25)]

    frames = frames_of(batch, TOPIC_OF, key, max_records=10)

    assert [len(f.records) for f in frames] == [10, 10, 5]
    assert [r for f in frames for r in f.records] == batch


def test_a_frame_over_the_byte_bound_is_split_in_parts_under_it(monkeypatch: pytest.MonkeyPatch) -> None:
    records: list[Record] = [trade("okx", "BTC", i) for i in range(9)]
    one = len(codec.encode(records[0]))
    monkeypatch.setattr(pub, "FRAME_MAX_BYTES", 3 * one)
    publisher = KafkaPublisher(NO_BROKER, {}, LatencyHistogram(), QUIET)

    parts = publisher._parts(records, codec.encode_frame(records))

    assert all(len(value) <= 3 * one for _, value in parts)
    assert [r for rs, _ in parts for r in rs] == records
    assert all(codec.decode_records(TradeTick, value) == rs for rs, value in parts)


def test_a_full_queue_leaves_the_batch_holding_what_was_not_handed_over() -> None:
    # Arrange: no broker, and room for three messages in librdkafka's queue
    stats: defaultdict[str, VenueStats] = defaultdict(VenueStats)
    publisher = KafkaPublisher(NO_BROKER, stats, LatencyHistogram(), {**QUIET, "queue.buffering.max.messages": 3},
                               topics=TOPIC_OF_NAMES, frame_max=2)
    batch: list[Record] = [trade("okx", "BTC", i) for i in range(5)]
    batch += [trade("okx", "ETH", i) for i in range(3)]
    original = list(batch)
    # Act
    with pytest.raises(BufferError):
        publisher.publish(batch)
    # Assert: frames of two: BTC 0-1, BTC 2-3, BTC 4 handed over; ETH 0-2 kept, in order
    assert batch == original[5:]
    assert publisher.messages == 3 and publisher.in_flight == 5
    assert stats["okx"].published == 5


def test_a_frame_is_a_json_array_a_console_consumer_can_read() -> None:
    records = [trade("okx", "BTC", 1), trade("okx", "BTC", 2)]

    value = codec.encode_frame(records)

    assert [r["trade_id"] for r in msgspec.json.decode(value)] == ["1", "2"]
