"""Where batches of rows go: the :class:`RowStore` interface and its in-memory twin.

A store takes one batch at a time: :meth:`RowStore.write_batch` stages rows of several tables inside one
transaction and returns how many were new (rows whose natural key is already stored are skipped, which makes
replays idempotent); :meth:`RowStore.commit` makes them durable. The PostgreSQL implementation is
:class:`sinks.pgstore.PgStore`; :class:`MemoryStore` behaves the same (same keys, same counts, same ``ts``
precision) so that one test suite runs against both, and can be told to fail to test retries.

Feature vectors name their feature set by ``set_id``; a store keeps each set's ordered names (``feature_sets``)
and refuses a vector whose set it neither holds nor can learn from the row (:class:`sinks.tables.FeatureRow`
carries the names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from sinks.errors import StoreError, StoreUnavailable
from sinks.tables import BY_NAME, FEATURE_BARS, FEATURE_SET_COLUMN, TABLES, Item, Row, TableSpec


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

    def feature_sets(self) -> dict[int, tuple[str, ...]]:
        """The stored feature sets: set_id -> ordered names."""
        ...


def truncate_ts(table: TableSpec, row: Row) -> Row:
    """``row`` with its ``ts`` columns truncated to microseconds, as PostgreSQL stores them."""
    kinds = [c.kind for c in table.columns]
    return tuple(v // 1000 * 1000 if k == "ts" else v for k, v in zip(kinds, row, strict=True))


class MemoryStore:
    """A :class:`RowStore` in a dict: the twin of :class:`sinks.pgstore.PgStore` for tests."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[Row, Row]] = {t.name: {} for t in TABLES}
        self._staged: dict[str, dict[Row, Row]] = {}
        self.sets: dict[int, tuple[str, ...]] = {}
        self._staged_sets: dict[int, tuple[str, ...]] = {}
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
            self.rollback()
            raise self._failures.pop(0)

    def write_batch(self, rows: Mapping[str, Sequence[Item]]) -> dict[str, int]:
        self._maybe_fail()
        inserted: dict[str, int] = {}
        for name, batch in rows.items():
            table = BY_NAME[name]
            if table is FEATURE_BARS:
                self._add_sets(batch)
            stored, staged = self.tables[name], self._staged.setdefault(name, {})
            before = len(staged)
            for item in batch:
                row = truncate_ts(table, table.row(item))
                key = table.key_of(row)
                if key not in stored and key not in staged:
                    staged[key] = row
            inserted[name] = len(staged) - before
        return inserted

    def _add_sets(self, batch: Sequence[Item]) -> None:
        for item in batch:
            set_id = item[FEATURE_SET_COLUMN]
            names: tuple[str, ...] | None = getattr(item, "names", None)
            held = self.sets.get(set_id, self._staged_sets.get(set_id))
            if held is None:
                if names is None:
                    raise StoreError(f"feature set {set_id} is not stored and its rows do not carry its names")
                self._staged_sets[set_id] = names
            elif names is not None and held != names:
                raise StoreError(f"feature set {set_id} is stored with other names (a 64-bit hash collision)")

    def commit(self) -> None:
        self._maybe_fail()
        for name, staged in self._staged.items():
            self.tables[name].update(staged)
        self.sets.update(self._staged_sets)
        self.rollback()
        self.commits += 1

    def rollback(self) -> None:
        self._staged.clear()
        self._staged_sets.clear()

    def close(self) -> None:
        self.rollback()
        self.closed = True

    def count(self, table: str) -> int:
        return len(self.tables[table])

    def fetch(self, table: str) -> list[Row]:
        return [row for _, row in sorted(self.tables[table].items(), key=lambda kv: _sortable(kv[0]))]

    def feature_sets(self) -> dict[int, tuple[str, ...]]:
        return dict(self.sets)


def _sortable(key: Row) -> tuple[tuple[bool, object], ...]:
    return tuple((v is None, v) for v in key)
