"""The bounded queue between the sockets and Kafka, with an explicit policy when it is full.

``drop-oldest`` keeps the freshest ticks (the usual choice for market data: stale quotes are worth little);
``drop-newest`` keeps what is already queued and refuses the new records. Every dropped record is counted
against its venue. Single event loop, no locks: producers call :meth:`DropQueue.put_many` synchronously.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal

from producers.exchanges.base import Record

Policy = Literal["drop-oldest", "drop-newest"]
POLICIES: tuple[Policy, ...] = ("drop-oldest", "drop-newest")


class DropQueue:
    """A bounded FIFO of records; ``on_drop(record)`` is called for each record the policy discards."""

    def __init__(self, maxsize: int, policy: Policy, on_drop: Callable[[Record], None]) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be at least 1, got {maxsize}")
        if policy not in POLICIES:
            raise ValueError(f"queue policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.maxsize = maxsize
        self.policy = policy
        self._items: deque[Record] = deque()
        self._on_drop = on_drop
        self._ready = asyncio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put_many(self, records: Sequence[Record]) -> int:
        """Enqueue ``records``; returns how many records (old or new, by policy) were dropped."""
        items = self._items
        space = self.maxsize - len(items)
        dropped = 0
        if len(records) <= space:
            items.extend(records)
        elif self.policy == "drop-newest":
            items.extend(records[:space])
            for r in records[space:]:
                self._on_drop(r)
            dropped = len(records) - space
        else:
            items.extend(records)
            while len(items) > self.maxsize:
                self._on_drop(items.popleft())
                dropped += 1
        self.dropped += dropped
        if items:
            self._ready.set()
        return dropped

    def get_nowait(self, max_n: int) -> list[Record]:
        items = self._items
        n = min(max_n, len(items))
        batch = [items.popleft() for _ in range(n)]
        if not items:
            self._ready.clear()
        return batch

    async def get_batch(self, max_n: int) -> list[Record]:
        """Up to ``max_n`` records, waiting for the first one (an empty list after :meth:`wake`)."""
        if not self._items:
            await self._ready.wait()
        return self.get_nowait(max_n)

    def wake(self) -> None:
        """Release a waiting :meth:`get_batch` (shutdown)."""
        self._ready.set()
