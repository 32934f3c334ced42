"""Bad bytes raise one clear error that names the field and the reason."""

from __future__ import annotations

import msgspec
import pytest

from topics import codec
from topics.errors import DecodeError
from topics.records import F_LAST, MboFrame, MboRecord, TradeTick

pytestmark = pytest.mark.unit

GOOD = MboRecord(
    ts_recv=1_703_541_600_000_000_000, ts_event=1_703_541_599_999_000_000, publisher_id=1, instrument_id=17077,
    action="A", side="B", price=4_810_000_000_000, size=2, order_id=6_407_006_811_384, flags=F_LAST,
    sequence=1_234,
)
GOOD_BYTES = codec.encode(GOOD)
FRAME_BYTES = codec.encode(MboFrame.from_records([GOOD, GOOD]))


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (GOOD_BYTES.replace(b'"price":4810000000000', b'"price":"4810"'), "$.price", "Expected `int`, got `str`"),
        (GOOD_BYTES.replace(b'"action":"A"', b'"action":"X"'), "$.action", "Invalid enum value 'X'"),
        (GOOD_BYTES.replace(b'"side":"B"', b'"side":5'), "$.side", "Expected `str`, got `int`"),
        (GOOD_BYTES.replace(b'"size":2', b'"size":-2'), "$.size", "Expected `int` >= 0"),
        (GOOD_BYTES.replace(b'"flags":128', b'"flags":256'), "$.flags", "Expected `int` <= 255"),
        (GOOD_BYTES.replace(b'"instrument_id":17077,', b""), "$.instrument_id", "missing required field"),
        (GOOD_BYTES.replace(b'"order_id":6407006811384,', b""), "$.order_id", "missing required field"),
    ],
)
def test_wrong_types_and_missing_fields_name_the_field(data: bytes, field: str, reason: str) -> None:
    # Act
    with pytest.raises(DecodeError) as info:
        codec.decode(MboRecord, data)
    # Assert
    assert info.value.field == field
    assert reason in info.value.reason
    assert field in str(info.value) and "MboRecord" in str(info.value)


@pytest.mark.parametrize("data", [b"", b"{", b"not json", GOOD_BYTES[:-5], b"\xff\xfe\x00"])
def test_malformed_json_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError, match="not valid JSON"):
        codec.decode(MboRecord, data)


def test_a_null_message_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="no value"):
        codec.decode(MboFrame, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (FRAME_BYTES.replace(b'"side":"BB"', b'"side":"B"'), "$.side", "1 values, expected 2"),
        (FRAME_BYTES.replace(b'"price":[4810000000000,4810000000000]', b'"price":[4810000000000]'), "$.price",
         "1 values, expected 2"),
        (FRAME_BYTES.replace(b'"action":"AA"', b'"action":"AZ"'), "$.action[1]", "'Z' is not one of"),
        (FRAME_BYTES.replace(b'"size":[2,2]', b'"size":[2,"2"]'), "$.size[1]", "Expected `int`, got `str`"),
        (FRAME_BYTES.replace(b'"action":"AA"', b'"action":""').replace(b'"side":"BB"', b'"side":""'),
         "$.action", "at least one record"),
    ],
)
def test_inconsistent_frames_name_the_column(data: bytes, field: str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode(MboFrame, data)
    assert info.value.field == field
    assert reason in info.value.reason


def test_decode_error_is_a_value_error_for_callers_that_catch_broadly() -> None:
    with pytest.raises(ValueError):
        codec.decode(MboRecord, b"[]")



TRADE = TradeTick(venue="okx", symbol="BTC-USDT", ts_event=1_651_000_000_000_000_000,
                  ts_recv=1_651_000_000_001_000_000, price=39_000_500_000_000, size=1_000_000, side="B", trade_id="7")


def test_a_framed_value_decodes_as_a_frame_or_as_one_record() -> None:
    # Arrange
    second = msgspec.structs.replace(TRADE, trade_id="8")
    frame, single = codec.encode_frame([TRADE, second]), codec.encode(TRADE)
    # Act
    from_frame, from_single = codec.decode_records(TradeTick, frame), codec.decode_records(TradeTick, single)
    # Assert
    assert frame.startswith(b"[{")
    assert from_frame == [TRADE, second]
    assert from_single == [TRADE]


def test_a_bad_record_in_a_frame_is_named_by_its_index() -> None:
    # Arrange
    bad = codec.encode(TRADE).replace(b'"size":1000000', b'"size":"1"')
    frame = b"[" + codec.encode(TRADE) + b"," + bad + b"]"
    # Act
    with pytest.raises(DecodeError) as info:
        codec.decode_records(TradeTick, frame)
    # Assert
    assert info.value.field == "$[1].size"
    assert "Expected `int`, got `str`" in info.value.reason
