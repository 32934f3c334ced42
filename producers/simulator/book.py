"""The simulator's own view of each instrument's book: resting orders by id, levels in time priority.

Prices here are in ticks (integers); the generator converts them to Databento's 1e-9 fixed point on output.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sortedcontainers import SortedDict


@dataclass
class SimOrder:
    side: str  # "B" or "A"
    price: int  # ticks
    size: int


@dataclass
class SimBook:
    """Resting orders of one instrument; picks random orders in O(1) for cancels and modifies."""

    instrument_id: int
    tick: int  # price increment in 1e-9 units
    mid: int  # mid price when last seen with both sides, ticks (the reference when the book is empty)
    orders: dict[int, SimOrder] = field(default_factory=dict)
    bids: SortedDict = field(default_factory=SortedDict)  # price -> {order_id: None} in priority order
    asks: SortedDict = field(default_factory=SortedDict)
    _ids: list[int] = field(default_factory=list)
    _pos: dict[int, int] = field(default_factory=dict)
    sequence: int = 0

    def __len__(self) -> int:
        return len(self.orders)

    def best_bid(self) -> int | None:
        return self.bids.peekitem(-1)[0] if self.bids else None

    def best_ask(self) -> int | None:
        return self.asks.peekitem(0)[0] if self.asks else None

    def side_levels(self, side: str) -> SortedDict:
        return self.bids if side == "B" else self.asks

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence

    def add(self, order_id: int, side: str, price: int, size: int) -> None:
        self.orders[order_id] = SimOrder(side, price, size)
        levels = self.side_levels(side)
        level = levels.get(price)
        if level is None:
            level = levels[price] = {}
        level[order_id] = None
        self._pos[order_id] = len(self._ids)
        self._ids.append(order_id)

    def remove(self, order_id: int) -> SimOrder:
        order = self.orders.pop(order_id)
        levels = self.side_levels(order.side)
        level = levels[order.price]
        del level[order_id]
        if not level:
            del levels[order.price]
        i = self._pos.pop(order_id)
        last = self._ids.pop()
        if last != order_id:
            self._ids[i] = last
            self._pos[last] = i
        return order

    def reduce(self, order_id: int, size: int) -> None:
        """Take ``size`` off an order (a fill or a partial cancel); removes it at zero."""
        order = self.orders[order_id]
        if size >= order.size:
            self.remove(order_id)
        else:
            order.size -= size

    def modify(self, order_id: int, price: int, size: int) -> None:
        """Databento's M: price change or size increase loses priority, size decrease keeps it."""
        order = self.orders[order_id]
        if price != order.price or size > order.size:
            side = order.side
            self.remove(order_id)
            self.add(order_id, side, price, size)
        else:
            order.size = size

    def random_order(self, rng: random.Random) -> int:
        return self._ids[rng.randrange(len(self._ids))]
