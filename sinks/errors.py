"""Exceptions of the sinks package: one base, translated from psycopg/Kafka errors at the boundary."""

from __future__ import annotations


class SinkError(Exception):
    """Base of every error raised by :mod:`sinks`."""


class MigrationError(SinkError):
    """A migration cannot be applied: a changed or missing file, a mode mismatch, a failing statement."""


class StoreError(SinkError):
    """The database refused a batch for a reason that retrying will not fix (schema, data, permissions)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or dropped the connection: retry later with backoff."""


class RowError(SinkError, ValueError):
    """A decoded record cannot become a row (a value out of the column's range); it goes to the dead letters."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class SinkBackpressure(SinkError):
    """More rows are pending than the sink may hold: the consumer must pause until the writer catches up."""

    def __init__(self, pending: int, limit: int) -> None:
        self.pending = pending
        self.limit = limit
        super().__init__(f"{pending} rows pending, limit {limit}: pausing the consumer")
