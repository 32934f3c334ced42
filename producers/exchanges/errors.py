"""Exceptions of the exchange connectors: one base, subclassing :class:`producers.errors.ProducerError`."""

from __future__ import annotations

from producers.errors import ProducerError


class ExchangeError(ProducerError):
    """Base of every error raised by :mod:`producers.exchanges`."""


class FrameError(ExchangeError, ValueError):
    """A frame that cannot be turned into records; ``reason`` says why (it is counted and logged, never fatal)."""

    def __init__(self, venue: str, reason: str) -> None:
        self.venue = venue
        self.reason = reason
        super().__init__(f"{venue}: malformed frame: {reason}")


class UnknownVenueError(ExchangeError, KeyError):
    """A venue name that no connector implements."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown venue"


class CaptureError(ExchangeError):
    """A capture file whose lines are not in a known format."""
