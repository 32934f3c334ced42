"""Pacing a replay by the recorded clock, and reading/writing session timestamps.

:class:`Pacer` maps a record's ``ts_recv`` (ns) to the wall time when it is due: the recorded pace times
``speed``. It is pure: the caller passes ``now`` (seconds of a monotonic clock) to every call.
"""

from __future__ import annotations

import bisect
import re
from datetime import UTC, datetime

from producers.errors import ProducerError

NS = 1_000_000_000


class TimeFormatError(ProducerError, ValueError):
    """A time given by the user that is neither ISO 8601 nor integer nanoseconds."""


class Pacer:
    """Releases records at ``speed`` × the recorded pace; ``speed=None`` means as fast as possible."""

    def __init__(self, speed: float | None = None) -> None:
        self.speed = _checked(speed)
        self._anchor: tuple[int, float] | None = None  # (session ts ns, wall seconds) that correspond

    @property
    def active(self) -> bool:
        return self.speed is not None

    def reset(self) -> None:
        """Forget the anchor: the next record is due at once and sets the pace from there (after a seek)."""
        self._anchor = None

    def anchor(self, ts_ns: int, now: float) -> None:
        """Session time ``ts_ns`` corresponds to wall time ``now``."""
        self._anchor = (ts_ns, now)

    def set_speed(self, speed: float | None, position_ns: int | None, now: float) -> None:
        """Change the speed from the current position on (no jump in session time)."""
        self.speed = _checked(speed)
        self._anchor = (position_ns, now) if position_ns is not None and speed is not None else None

    def horizon(self, now: float) -> int | None:
        """The latest session time due at ``now`` (None: not anchored yet or not pacing)."""
        if self._anchor is None or self.speed is None:
            return None
        ts0, wall0 = self._anchor
        return ts0 + int((now - wall0) * self.speed * NS)

    def due(self, ts: list[int], pos: int, now: float) -> int:
        """Index after the last record of ``ts[pos:]`` due at ``now`` (``ts`` in ts_recv order)."""
        if self.speed is None:
            return len(ts)
        if self._anchor is None:
            self.anchor(ts[pos], now)
        horizon = self.horizon(now)
        assert horizon is not None
        return bisect.bisect_right(ts, horizon, pos)

    def wait_s(self, ts_ns: int, now: float) -> float:
        """Seconds until a record of session time ``ts_ns`` is due (0 when due or not pacing)."""
        if self._anchor is None or self.speed is None:
            return 0.0
        ts0, wall0 = self._anchor
        return max(0.0, (ts_ns - ts0) / (self.speed * NS) - (now - wall0))


def _checked(speed: float | None) -> float | None:
    if speed is not None and not 0 < speed < float("inf"):
        raise ProducerError(f"speed must be a positive number or None (as fast as possible), got {speed}")
    return speed


def parse_speed(text: str) -> float | None:
    """``"max"`` (or ``"0"``) → None (as fast as possible); otherwise a positive multiplier."""
    if text.strip().lower() in ("max", "inf", "0", ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise TimeFormatError(f"speed {text!r}: expected a positive number or 'max'") from None
    if not 0 < value < float("inf"):
        raise TimeFormatError(f"speed {text!r}: expected a positive number or 'max'")
    return value


_ISO = re.compile(r"^(?P<base>\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?)(?:\.(?P<frac>\d{1,9}))?(?P<tz>.*)$")


def parse_ts(text: str) -> int:
    """ns since the UNIX epoch from integer nanoseconds or ISO 8601 (``2023-12-25T14:30:00.123456789Z``).

    A time without a zone is UTC; fractions keep all nine digits.
    """
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    match = _ISO.match(text)
    if match is None:
        raise TimeFormatError(f"time {text!r}: expected ISO 8601 (2023-12-25T14:30:00Z) or integer nanoseconds")
    tz = match.group("tz").strip()
    tz = "+00:00" if tz in ("", "Z", "z") else tz
    try:
        moment = datetime.fromisoformat(match.group("base") + tz)
    except ValueError:
        raise TimeFormatError(f"time {text!r}: not a valid ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    frac = (match.group("frac") or "").ljust(9, "0")
    seconds = int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    return seconds * NS + int(frac or 0)


def format_ts(ns: int | None) -> str | None:
    """ISO 8601 UTC with nanoseconds, e.g. ``2023-12-25T14:30:00.123456789Z``."""
    if ns is None:
        return None
    seconds, frac = divmod(ns, NS)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"
