"""Schema round trips on real Databento records, and the frame's column rules."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tests.topics.conftest import read_dbn_mbo
from topics import codec
from topics.errors import DecodeError
from topics.records import (
    F_LAST,
    BboUpdate,
    BookAnomaly,
    DeadLetter,
    Level,
    MboFrame,
    MboRecord,
    Mbp10Snapshot,
    QuoteTick,
    TradeTick,
)

pytestmark = pytest.mark.unit


def test_every_esh4_record_round_trips_through_json(esh4_records: list[MboRecord]) -> None:
    # Arrange
    records = esh4_records
    # Act
    decoded = [codec.decode(MboRecord, codec.encode(r)) for r in records]
    # Assert
    assert len(records) == 68_792
    assert decoded == records


def test_esh4_frames_round_trip_and_give_back_their_records(esh4_records: list[MboRecord]) -> None:
    # Arrange: frames of up to 250 records, as the producer makes them
    chunks = [esh4_records[i : i + 250] for i in range(0, len(esh4_records), 250)]
    # Act
    frames = [codec.decode(MboFrame, codec.encode(MboFrame.from_records(c))) for c in chunks]
    # Assert
    assert [list(f.records()) for f in frames] == chunks
    assert sum(len(f) for f in frames) == len(esh4_records)


@pytest.mark.parametrize(
    "name", ["test_data.mbo.dbn", "test_data.mbo.v1.dbn.zst", "test_data.mbo.v2.dbn.zst", "test_data.mbo.v3.dbn"]
)
def test_dbn_versions_give_the_same_records(shared_data: Path, name: str) -> None:
    # Arrange
    path = shared_data / "databento" / "dbn" / name
    # Act
    records = read_dbn_mbo(path)
    # Assert: two cancels on the ask of ESH1 at 3722.75, both F_LAST
    assert [(r.action, r.side, r.flags, r.sequence) for r in records] == [
        ("C", "A", F_LAST, 1_170_352),
        ("C", "A", F_LAST, 1_170_353),
    ]
    assert records[0].price == 3_722_750_000_000
    assert [codec.decode(MboRecord, codec.encode(r)) for r in records] == records


def test_frame_is_readable_json_with_databento_field_names() -> None:
    # Arrange
    rec = MboRecord(
        ts_recv=2, ts_event=1, publisher_id=1, instrument_id=17077, action="A", side="B",
        price=4_810_000_000_000, size=3, order_id=42, flags=F_LAST, sequence=9,
    )
    # Act
    doc = msgspec.json.decode(codec.encode(MboFrame.from_records([rec])))
    # Assert
    assert doc["instrument_id"] == 17077
    assert doc["action"] == "A" and doc["side"] == "B"
    assert doc["price"] == [4_810_000_000_000]
    assert doc["order_id"] == [42]


def test_frame_refuses_records_of_two_instruments() -> None:
    a = MboRecord(ts_recv=1, ts_event=1, publisher_id=1, instrument_id=1, action="A", side="B", price=1, size=1,
                  order_id=1)
    b = msgspec.structs.replace(a, instrument_id=2)
    with pytest.raises(ValueError, match=r"record 1 is \(1, 2\)"):
        MboFrame.from_records([a, b])


@pytest.mark.parametrize(
    "record",
    [
        TradeTick(venue="binance", symbol="BTCUSDT", ts_event=1, ts_recv=2, price=60_000_000_000_000,
                  size=1_000, side="B", trade_id="123"),
        QuoteTick(venue="kraken", symbol="XBT/USD", ts_event=1, ts_recv=2, bid_px=None, bid_sz=0,
                  ask_px=5, ask_sz=6),
        BboUpdate(publisher_id=1, instrument_id=2, ts_event=1, ts_recv=2, sequence=3, bid_px=10, bid_sz=1,
                  bid_ct=1, ask_px=None, ask_sz=0, ask_ct=0),
        Mbp10Snapshot(publisher_id=1, instrument_id=2, ts_event=1, ts_recv=2, sequence=3,
                      bids=[Level(10, 5, 2)], asks=[]),
        BookAnomaly(publisher_id=1, instrument_id=2, ts_event=1, ts_recv=2, sequence=3, kind="crossed"),
        DeadLetter(topic="mbo.frames", partition=3, offset=77, key=b"17077", value=b"\x00garbage", reason="bad",
                   stage="book-agent", ts_recv=5),
    ],
)
def test_output_records_round_trip(record: msgspec.Struct) -> None:
    assert codec.decode(type(record), codec.encode(record)) == record


def test_decode_by_catalog_name() -> None:
    tick = TradeTick(venue="okx", symbol="BTC-USDT", ts_event=1, ts_recv=2, price=1, size=1, side="A", trade_id="x")
    assert codec.decode_by_name("TradeTick", codec.encode(tick)) == tick
    with pytest.raises(DecodeError, match="unknown record type"):
        codec.decode_by_name("Nope", b"{}")
