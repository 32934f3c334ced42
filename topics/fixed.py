"""Exact conversion between decimal text and 1e-9 fixed-point integers, and back for display.

Venues send prices and sizes as decimal strings (``"60123.45"``); parsing them through ``float`` would lose
digits, so they are parsed as text.
"""

from __future__ import annotations

from topics.records import PRICE_SCALE, UNDEF_PRICE

SCALE_DIGITS = 9


def parse_fixed(text: str | int | float, field: str = "value") -> int:
    """``"60123.45"`` -> ``60123450000000``. Raises ``ValueError`` naming ``field`` on bad text or >9 decimals.

    Exponent notation (``"1e-05"``, as some venues send) is accepted. Floats are formatted with ``repr`` first,
    which is exact for the decimal the venue meant.
    """
    if isinstance(text, bool):
        raise ValueError(f"{field}: expected a decimal number, got {text!r}")
    if isinstance(text, int):
        return text * PRICE_SCALE
    raw = repr(text) if isinstance(text, float) else text.strip()
    mantissa, exp = _split_exponent(raw, field)
    negative = mantissa.startswith("-")
    digits = mantissa[1:] if mantissa[:1] in ("+", "-") else mantissa
    whole, _, frac = digits.partition(".")
    if not (whole or frac) or not (whole + frac).isdigit():
        raise ValueError(f"{field}: {raw!r} is not a decimal number")
    shift = SCALE_DIGITS + exp
    all_digits = (whole or "0") + frac
    point = len(whole or "0") + shift  # position of the scaled decimal point within all_digits
    if point >= len(all_digits):
        scaled = int(all_digits + "0" * (point - len(all_digits)))
    else:
        kept, dropped = all_digits[: max(point, 0)], all_digits[max(point, 0) :]
        if dropped.strip("0"):
            raise ValueError(f"{field}: {raw!r} has more than {SCALE_DIGITS} decimal places")
        scaled = int(kept or "0")
    return -scaled if negative else scaled


def _split_exponent(raw: str, field: str) -> tuple[str, int]:
    lower = raw.lower()
    if "e" not in lower:
        return raw, 0
    mantissa, _, exp = lower.partition("e")
    try:
        return mantissa, int(exp)
    except ValueError:
        raise ValueError(f"{field}: {raw!r} is not a decimal number") from None


def format_fixed(value: int | None, min_decimals: int = 0) -> str:
    """``60123450000000`` -> ``"60123.45"``; empty text for ``None`` or ``UNDEF_PRICE``.

    Trailing zeros are dropped down to ``min_decimals`` decimals.
    """
    if value is None or value == UNDEF_PRICE:
        return ""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), PRICE_SCALE)
    text = f"{frac:09d}".rstrip("0")
    if len(text) < min_decimals:
        text = text.ljust(min_decimals, "0")
    return f"{sign}{whole}.{text}" if text else f"{sign}{whole}"


def to_float(value: int | None) -> float | None:
    """For display only: the fixed-point value as a float, ``None`` when undefined."""
    if value is None or value == UNDEF_PRICE:
        return None
    return value / PRICE_SCALE
