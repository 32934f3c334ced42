"""Decimal text <-> 1e-9 fixed point, exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topics.fixed import format_fixed, parse_fixed, to_float
from topics.records import UNDEF_PRICE

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("60123.45", 60_123_450_000_000),
        ("0.00012", 120_000),
        ("1e-05", 10_000),
        ("2.5E3", 2_500_000_000_000),
        ("-3.5", -3_500_000_000),
        ("12", 12_000_000_000),
        (".5", 500_000_000),
        ("5.", 5_000_000_000),
        ("0.000000001", 1),
        ("5.510000000", 5_510_000_000),
        (3, 3_000_000_000),
        (0.1, 100_000_000),
    ],
)
def test_parse_fixed(text: str, value: int) -> None:
    assert parse_fixed(text) == value


@pytest.mark.parametrize("text", ["abc", "", "1.2.3", "1e", "--1", "1.0000000001", True])
def test_parse_fixed_rejects_with_the_field_name(text: str) -> None:
    with pytest.raises(ValueError, match=r"^price: "):
        parse_fixed(text, "price")


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_format_then_parse_is_identity(value: int) -> None:
    assert parse_fixed(format_fixed(value)) == value


def test_format_fixed_for_display() -> None:
    assert format_fixed(4_810_250_000_000) == "4810.25"
    assert format_fixed(4_810_000_000_000, min_decimals=2) == "4810.00"
    assert format_fixed(None) == "" and format_fixed(UNDEF_PRICE) == ""
    assert to_float(UNDEF_PRICE) is None and to_float(1_500_000_000) == 1.5
