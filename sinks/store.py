"""Where batches of rows go: the :class:`RowStore` interface and its in-memory twin.

A store takes one batch at a time: :meth:`RowStore.write_batch` stages rows of several tables inside one
transaction and returns how many were new (rows whose natural key is already stored are skipped, which makes
replays idempotent); :meth:`RowStore.commit` makes them durable. The PostgreSQL implementation is
:class:`sinks.pgstore.PgStore`; :class:`MemoryStore` behaves the same (same keys, same counts, same ``ts``
precision) so that one test suite runs against both, and can be told to fail to test retries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from sinks.errors import StoreError, StoreUnavailable
from sinks.tables import BY_NAME, Item, Row, TableSpec


class RowStore(Protocol):
    def write_batch(self, rows: Mapping[str, Sequence[Item]]) -> dict[str, int]:
        """Stage ``rows`` (table name -> rows) in the open transaction; returns new rows per table."""
        ...

    def commit(self) -> None:
        """Make the staged rows durable."""
        ...

    def rollback(self) -> None:
        """Forget the staged rows."""
        ...

    def close(self) -> None: ...

    def count(self, table: str) -> int:
        """Rows stored in ``table``."""
        ...

    def fetch(self, table: str) -> list[Row]:
        """Every stored row of ``table`` in natural-key order, in the sink's row layout (``ts`` in ns, truncated
        to microseconds as stored)."""
        ...


def truncate_ts(table: TableSpec, row: Row) -> Row:
    """``row`` with its ``ts`` columns truncated to microseconds, as PostgreSQL stores them."""
    kinds = [c.kind for c in table.columns]
    return tuple(v // 1000 * 1000 if k == "ts" else v for k, v in zip(kinds, row, strict=True))


class MemoryStore:
    """A :class:`RowStore` in a dict: the twin of :class:`sinks.pgstore.PgStore` for tests."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[Row, Row]] = {name: {} for name in BY_NAME}
        self._staged: dict[str, dict[Row, Row]] = {}
        self._failures: list[StoreError] = []
        self.commits = 0
        self.closed = False

    def fail_next(self, times: int = 1, error: StoreError | None = None) -> None:
        """Make the next ``times`` calls to write_batch or commit raise ``error`` (default: unavailable)."""
        self._failures += [error or StoreUnavailable("memory store: simulated outage")] * times

    def _maybe_fail(self) -> None:
        if self.closed:
            raise StoreUnavailable("memory store: closed")
        if self._failures:
            self._staged.clear()
            raise self._failures.pop(0)

    def write_batch(self, rows: Mapping[str, Sequence[Item]]) -> dict[str, int]:
        self._maybe_fail()
        inserted: dict[str, int] = {}
        for name, batch in rows.items():
            table = BY_NAME[name]
            stored, staged = self.tables[name], self._staged.setdefault(name, {})
            before = len(staged)
            for item in batch:
                row = truncate_ts(table, table.row(item))
                key = table.key_of(row)
                if key not in stored and key not in staged:
                    staged[key] = row
            inserted[name] = len(staged) - before
        return inserted

    def commit(self) -> None:
        self._maybe_fail()
        for name, staged in self._staged.items():
            self.tables[name].update(staged)
        self._staged.clear()
        self.commits += 1

    def rollback(self) -> None:
        self._staged.clear()

    def close(self) -> None:
        self._staged.clear()
        self.closed = True

    def count(self, table: str) -> int:
        return len(self.tables[table])

    def fetch(self, table: str) -> list[Row]:
        return [row for _, row in sorted(self.tables[table].items(), key=lambda kv: _sortable(kv[0]))]


def _sortable(key: Row) -> tuple[tuple[bool, object], ...]:
    return tuple((v is None, v) for v in key)
