"""Fast exact decimal-text -> 1e-9 fixed-point conversion for the hot path, and venue time stamps -> ns.

Plain ``"123.456"`` strings take a fast path; anything else (exponents, signs, more than 9 decimals) goes through
:func:`topics.fixed.parse_fixed`, which is exact and names the field on error.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from topics.fixed import parse_fixed

_POW10 = tuple(10**i for i in range(10))
_SCALE = 1_000_000_000


_CACHE_MAX = 100_000
_cache: dict[str, int] = {}


def fx(text: str, field: str = "value") -> int:
    """``"60123.45"`` -> ``60123450000000`` exactly; raises ``ValueError`` naming ``field`` on bad text.

    Venues repeat the same price and size texts constantly, so results are memoized (bounded, cleared when full).
    """
    value = _cache.get(text)
    if value is not None:
        return value
    value = fx_raw(text, field)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[text] = value
    return value


def fx_raw(text: str, field: str = "value") -> int:
    """:func:`fx` without the memo (for values that rarely repeat, such as time stamps). Rejects negatives."""
    if text[:1] == "-":
        raise ValueError(f"{field}: {text!r} is negative")
    i = text.find(".")
    digits, n = (text, 0) if i < 0 else (text[:i] + text[i + 1 :], len(text) - i - 1)
    if n <= 9 and digits.isascii() and digits.isdigit():
        return int(digits) * _POW10[9 - n]
    return parse_fixed(text, field)


def fx_num(value: Decimal | int | str, field: str = "value") -> int:
    """A JSON number decoded exactly (``Decimal`` or ``int``) or decimal text -> fixed point."""
    if isinstance(value, str):
        return fx(value, field)
    if isinstance(value, int):
        return value * _SCALE
    return parse_fixed(str(value), field)


def ms_to_ns(ms: int) -> int:
    return ms * 1_000_000


def us_to_ns(us: int) -> int:
    return us * 1_000


def iso_to_ns(text: str) -> int:
    """``"2021-04-17T16:43:37.075687Z"`` -> ns since the epoch, exact to the digits given (up to 9)."""
    head, dot, rest = text.partition(".")
    if dot:
        frac = rest.rstrip("Z").split("+")[0]
        if not frac.isdigit() or len(frac) > 9:
            raise ValueError(f"time: {text!r} is not an ISO-8601 UTC time")
        frac_ns = int(frac) * _POW10[9 - len(frac)]
    else:
        head, frac_ns = text.rstrip("Z"), 0
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return int(seconds) * _SCALE + frac_ns


def fx_text(value: int, decimals: int) -> str:
    """The digits of ``value`` at ``decimals`` places, without the point and leading zeros (Kraken's checksum)."""
    return str(value // _POW10[9 - decimals])


def decimals_of(text: str) -> int:
    """How many decimals a venue's decimal text carries (``"354.11000000"`` -> 8)."""
    return len(text.partition(".")[2])
