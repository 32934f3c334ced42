"""The two building blocks of a book: a resting order and a price level (orders in priority order)."""

from __future__ import annotations

from topics.records import Level


class Order:
    """A resting order. ``arrival`` is the book-wide stamp of the moment it took its place in the queue."""

    __slots__ = ("arrival", "price", "side", "size")

    def __init__(self, side: str, price: int, size: int, arrival: int) -> None:
        self.side = side
        self.price = price
        self.size = size
        self.arrival = arrival


class PriceLevel:
    """Orders at one price in priority order, their total size, and the F_TOB entry if any (not an order)."""

    __slots__ = ("orders", "tob_oid", "total")

    def __init__(self) -> None:
        self.orders: dict[int, Order] = {}
        self.total = 0
        self.tob_oid: int | None = None

    def level(self, price: int) -> Level:
        return Level(price, self.total, len(self.orders) - (self.tob_oid is not None))
