"""Deliberately naive models of the book rules, written independently of processors.book, for property tests.

Orders are one list in arrival order; every query scans it. Nothing is cached, nothing is clever.
"""

from __future__ import annotations

from dataclasses import dataclass

from topics.records import UNDEF_PRICE, Level, MboRecord


@dataclass
class NaiveOrder:
    order_id: int
    side: str
    price: int
    size: int


class NaiveBook:
    """Databento's rules on a plain list (keep policy, no F_TOB, no idempotency: callers skip replays)."""

    def __init__(self) -> None:
        self.orders: list[NaiveOrder] = []  # global arrival order = priority within each level

    def find(self, order_id: int) -> int | None:
        for i, o in enumerate(self.orders):
            if o.order_id == order_id:
                return i
        return None

    def apply(self, r: MboRecord) -> None:
        if r.action == "R":
            self.orders = []
        elif r.action == "A":
            if r.side in ("A", "B") and r.price != UNDEF_PRICE and r.size > 0:
                self._drop(r.order_id)
                self.orders.append(NaiveOrder(r.order_id, r.side, r.price, r.size))
        elif r.action == "C":
            if r.side in ("A", "B"):
                self._cancel(r.order_id, r.size)
        elif r.action == "M" and r.side in ("A", "B") and r.price != UNDEF_PRICE:
            self._modify(r)

    def _drop(self, order_id: int) -> None:
        i = self.find(order_id)
        if i is not None:
            del self.orders[i]

    def _cancel(self, order_id: int, size: int) -> None:
        i = self.find(order_id)
        if i is None:
            return
        if size >= self.orders[i].size:
            del self.orders[i]
        else:
            self.orders[i].size -= size

    def _modify(self, r: MboRecord) -> None:
        i = self.find(r.order_id)
        if i is None:
            if r.size > 0:
                self.orders.append(NaiveOrder(r.order_id, r.side, r.price, r.size))
            return
        o = self.orders[i]
        if r.size == 0:
            del self.orders[i]
        elif o.side != r.side or o.price != r.price or r.size > o.size:
            del self.orders[i]
            self.orders.append(NaiveOrder(r.order_id, r.side, r.price, r.size))
        else:
            o.size = r.size

    def levels(self, side: str) -> list[Level]:
        prices = sorted({o.price for o in self.orders if o.side == side}, reverse=side == "B")
        out = []
        for p in prices:
            at = [o for o in self.orders if o.side == side and o.price == p]
            out.append(Level(p, sum(o.size for o in at), len(at)))
        return out

    def queue(self, side: str, price: int) -> list[tuple[int, int]]:
        return [(o.order_id, o.size) for o in self.orders if o.side == side and o.price == price]

    def bbo(self) -> tuple[Level | None, Level | None]:
        bids, asks = self.levels("B"), self.levels("A")
        return (bids[0] if bids else None, asks[0] if asks else None)

    def crossed(self) -> bool:
        bid, ask = self.bbo()
        return bid is not None and ask is not None and bid.price >= ask.price


class NaiveMatcher:
    """A continuous price-time matching engine fed adds only: each add trades on arrival, the rest rests."""

    def __init__(self) -> None:
        self.book = NaiveBook()
        self.fills: list[tuple[int, int, str, int]] = []  # (price, size, aggressor side, aggressor order id)

    def add(self, side: str, price: int, size: int, order_id: int) -> None:
        while size > 0:
            opposite = [o for o in self.book.orders if o.side != side and _crosses(side, price, o.price)]
            if not opposite:
                break
            best = min(o.price for o in opposite) if side == "B" else max(o.price for o in opposite)
            resting = next(o for o in opposite if o.price == best)  # first in arrival order at that price
            qty = min(size, resting.size)
            self.fills.append((resting.price, qty, side, order_id))
            resting.size -= qty
            if resting.size == 0:
                self.book.orders.remove(resting)
            size -= qty
        if size > 0:
            self.book.orders.append(NaiveOrder(order_id, side, price, size))


def _crosses(side: str, price: int, other: int) -> bool:
    return other <= price if side == "B" else other >= price


def drop_stale_naive(book: NaiveBook) -> None:
    """Remove every order that a newer opposite order (later in the list) crosses."""
    stale = set()
    for i, o in enumerate(book.orders):
        for newer in book.orders[i + 1:]:
            if newer.side != o.side and _crosses(newer.side, newer.price, o.price):
                stale.add(o.order_id)
                break
    book.orders = [o for o in book.orders if o.order_id not in stale]
