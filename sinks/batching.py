"""Pure pieces of the sink loop: the batch being filled, and the retry backoff. No I/O, no clock reads.

A :class:`Batch` holds the rows of several tables plus, per (topic, partition), the next offset to commit once
the batch is durable: committing it says "every message before this offset is stored". A message that became a
dead letter moves the offset on without adding rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sinks.tables import BY_NAME, Item

TopicPartition = tuple[str, int]


@dataclass
class Batch:
    rows: dict[str, list[Item]] = field(default_factory=dict)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    n_rows: int = 0
    size: int = 0  # row units (rows times their table's ``weight``): what the batch and memory bounds count
    n_messages: int = 0
    opened_at: float = 0.0  # clock value (s) when its first message arrived

    def add(self, table: str, rows: list[Item]) -> None:
        bucket = self.rows.get(table)
        if bucket is None:
            self.rows[table] = rows
        else:
            bucket.extend(rows)
        self.n_rows += len(rows)
        self.size += len(rows) * BY_NAME[table].weight


class Accumulator:
    """Fills a batch until it holds ``max_rows`` row units or its first message is ``max_age_s`` old."""

    def __init__(self, max_rows: int, max_age_s: float) -> None:
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.batch = Batch()

    @property
    def pending_rows(self) -> int:
        return self.batch.size

    def extend(self, rows: dict[str, list[Item]], offsets: dict[TopicPartition, int], n_messages: int,
               now: float) -> None:
        """Add the rows and next offsets of ``n_messages`` consumed messages at once."""
        batch = self.batch
        if batch.n_messages == 0 and n_messages:
            batch.opened_at = now
        batch.n_messages += n_messages
        batch.offsets.update(offsets)
        for table, table_rows in rows.items():
            batch.add(table, table_rows)

    def due(self, now: float) -> bool:
        batch = self.batch
        return batch.n_messages > 0 and (batch.size >= self.max_rows or now - batch.opened_at >= self.max_age_s)

    def wait_s(self, now: float, cap: float) -> float:
        """How long to wait for more messages before the batch falls due (at most ``cap``)."""
        if self.batch.n_messages == 0:
            return cap
        return max(0.0, min(cap, self.batch.opened_at + self.max_age_s - now))

    def take(self) -> Batch:
        batch, self.batch = self.batch, Batch()
        return batch


class Backoff:
    """Exponential backoff with full jitter: delays grow ``initial * factor**n`` up to ``maximum``."""

    def __init__(self, initial_s: float = 0.1, maximum_s: float = 5.0, factor: float = 2.0,
                 rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.factor = factor
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.maximum_s, self.initial_s * self.factor ** self.attempt)
        self.attempt += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempt = 0
