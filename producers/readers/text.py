"""Field parsers shared by the text readers: exact integers with ranges, timestamps, fixed-point prices.

Each raises :class:`FieldError` naming the field, which the reader turns into a malformed-row report.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import IO

from topics.fixed import parse_fixed

NS = 1_000_000_000
UNDEF_TIMESTAMP = 18_446_744_073_709_551_615  # Databento's undefined timestamp (UINT64_MAX)
_ISO = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?")


class FieldError(ValueError):
    """A field that does not parse; ``category`` is a short key for statistics (``"bad price"``)."""

    def __init__(self, category: str, reason: str) -> None:
        self.category = category
        self.reason = reason
        super().__init__(reason)


def parse_int(text: str, field: str, lo: int, hi: int) -> int:
    """A decimal integer in ``[lo, hi]``."""
    try:
        value = int(text)
    except ValueError:
        raise FieldError(f"bad {field}", f"{field}: {text!r} is not an integer") from None
    if not lo <= value <= hi:
        raise FieldError(f"bad {field}", f"{field}: {value} is outside [{lo}, {hi}]")
    return value


def parse_decimal_price(text: str, field: str = "price") -> int:
    """Decimal text (``"5.510000000"``) to 1e-9 fixed point, exactly."""
    whole, dot, frac = text.partition(".")
    if dot and whole.isdigit() and frac.isdigit() and len(frac) <= 9 and whole.isascii() and frac.isascii():
        return int(whole) * NS + int(frac.ljust(9, "0"))  # the common case, without the general parser
    try:
        return parse_fixed(text, field)
    except ValueError as e:
        raise FieldError(f"bad {field}", str(e)) from None


@lru_cache(maxsize=1 << 17)
def _epoch_seconds(day: str, clock: str) -> int:
    return int(datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=UTC).timestamp())


def _zone_seconds(zone: str | None) -> int:
    if not zone or zone == "Z":
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)


def parse_timestamp(text: str, field: str) -> int:
    """UNIX nanoseconds from integer text or ISO 8601 (``2025-07-17T07:05:09.035793433Z``; no zone means UTC).

    Empty text is ``UNDEF_TIMESTAMP``: Databento's CSV encoder writes both it and 0 as an empty field.
    """
    if not text:
        return UNDEF_TIMESTAMP
    if text.isdigit() and text.isascii():
        return int(text)
    if len(text) == 30 and text[10] == "T" and text[19] == "." and text[29] == "Z" and text[20:29].isdigit():
        try:
            return _epoch_seconds(text[:10], text[11:19]) * NS + int(text[20:29])
        except ValueError:
            pass  # reported below with the general pattern
    m = _ISO.fullmatch(text)
    if not m:
        raise FieldError(f"bad {field}", f"{field}: {text!r} is not a timestamp (ISO 8601 or integer ns)")
    try:
        seconds = _epoch_seconds(m[1], m[2]) - _zone_seconds(m[4])
    except ValueError:
        raise FieldError(f"bad {field}", f"{field}: {text!r} is not a valid date and time") from None
    frac = m[3] or ""
    return seconds * NS + int(frac.ljust(9, "0") if frac else 0)


def csv_rows(text: IO[str], on_bad: Callable[[int, str], None]) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each CSV row; a row the csv module cannot read goes to ``on_bad(line, reason)``."""
    rows = csv.reader(text)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as e:
            on_bad(rows.line_num, f"unreadable CSV row: {e}")
            continue
        yield rows.line_num, row
