"""Exceptions of the topics package: one base, one error for bytes that are not a valid record."""

from __future__ import annotations


class TopicsError(Exception):
    """Base of every error raised by :mod:`topics`."""


class DecodeError(TopicsError, ValueError):
    """Bytes that do not decode into the expected record.

    ``field`` is the JSON path of the offending field (``$.price``, ``$.records[3].side``) or ``None`` when the
    payload is not JSON at all; ``reason`` says what was wrong with it.
    """

    def __init__(self, record_type: str, reason: str, field: str | None = None) -> None:
        self.record_type = record_type
        self.reason = reason
        self.field = field
        where = f" at {field}" if field else ""
        super().__init__(f"invalid {record_type}{where}: {reason}")


class SettingsError(TopicsError, ValueError):
    """An ``ORDERFLOW_*`` environment variable holds a value that cannot be used."""
