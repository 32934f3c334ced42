"""What to do with a book that is crossed (best bid >= best ask) at a consistency point.

``keep`` does nothing. The two others act on the *crossed region*: the bid levels priced at or above the best ask
and the ask levels priced at or below the best bid. Orders outside it cannot cross anything, so only orders inside
it are touched. Every order carries an arrival stamp (when it took its place in the queue), which orders events
across both sides.

``match`` re-runs the region through a price-time matching engine: its orders are taken out and re-entered one by
one in arrival order; each one trades against the opposite side's best levels (oldest order first) while prices
cross, at the resting order's price, and what is left of it rests again with its original arrival stamp. Each trade
is a synthetic fill (aggressor = the newer order). The result is never crossed.

``drop-stale`` removes every order that a newer opposite order crosses (an ask is stale when a bid that arrived
later is priced at or above it; likewise for bids). A venue would have matched them when the newer order
arrived, so the older one cannot still be resting: its cancel was missed. Any two remaining orders that cross
would make the older of the two stale, so the result is never crossed.

F_TOB entries are venue quotes, not orders: both policies leave them alone (a crossed top-of-book stays crossed).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING

from topics.records import BookTrade

if TYPE_CHECKING:
    from processors.book.book import Book
    from processors.book.levels import Order, PriceLevel

_Entry = tuple[int, int, "Order"]  # (arrival, order_id, order)


def match(book: Book, sequence: int, ts_recv: int, ts_event: int) -> int:
    """Uncross by simulated matching; returns the number of synthetic fills pushed to the book's trades."""
    entries = _region_orders(book)
    for _, oid, order in entries:
        book._remove(oid, order)
    fills = 0
    for arrival, oid, order in entries:
        remaining = order.size
        while remaining > 0:
            hit = _front_of_opposite(book, order)
            if hit is None:
                break
            roid, resting = hit
            qty = min(remaining, resting.size)
            book._push_trade(BookTrade(
                publisher_id=book.publisher_id, instrument_id=book.instrument_id, ts_event=ts_event,
                ts_recv=ts_recv, sequence=sequence, price=resting.price, size=qty,
                side=order.side, order_id=oid, synthetic=True,  # type: ignore[arg-type]
            ))
            book._reduce(roid, resting, qty)
            remaining -= qty
            fills += 1
        if remaining > 0:
            book._place(oid, order.side, order.price, remaining, arrival)
    return fills


def drop_stale(book: Book) -> int:
    """Uncross by removing orders crossed by a newer opposite order; returns how many were removed."""
    bid, ask = book._best_bid, book._best_ask
    if bid is None or ask is None:
        return 0
    bid_prices = list(book._bids.irange(minimum=ask))  # ascending
    ask_prices = list(book._asks.irange(maximum=bid))  # ascending
    newest_bid_at_or_above = _suffix_max([_newest(book._bids[p]) for p in bid_prices])
    newest_ask_at_or_below = _prefix_max([_newest(book._asks[p]) for p in ask_prices])
    stale: list[tuple[int, Order]] = []
    for price in ask_prices:
        i = bisect_left(bid_prices, price)
        newest = newest_bid_at_or_above[i] if i < len(bid_prices) else 0
        stale.extend(_older_than(book._asks[price], newest))
    for price in bid_prices:
        i = bisect_right(ask_prices, price)
        newest = newest_ask_at_or_below[i - 1] if i > 0 else 0
        stale.extend(_older_than(book._bids[price], newest))
    for oid, order in stale:
        book._remove(oid, order)
    return len(stale)


def _region_orders(book: Book) -> list[_Entry]:
    """Orders of the crossed region (F_TOB entries excluded), oldest arrival first."""
    bid, ask = book._best_bid, book._best_ask
    if bid is None or ask is None:
        return []
    entries: list[_Entry] = []
    for levels, prices in ((book._bids, book._bids.irange(minimum=ask)), (book._asks, book._asks.irange(maximum=bid))):
        for price in list(prices):
            level = levels[price]
            entries.extend((o.arrival, oid, o) for oid, o in level.orders.items() if oid != level.tob_oid)
    entries.sort(key=lambda e: e[0])
    return entries


def _front_of_opposite(book: Book, order: Order) -> tuple[int, Order] | None:
    """The first order in priority of the opposite best level when it crosses ``order``, else None."""
    if order.side == "B":
        best = book._best_ask
        if best is None or best > order.price:
            return None
        level = book._asks[best]
    else:
        best = book._best_bid
        if best is None or best < order.price:
            return None
        level = book._bids[best]
    oid, resting = next(iter(level.orders.items()))
    if oid == level.tob_oid:
        return None  # a venue quote: not matchable
    return oid, resting


def _newest(level: PriceLevel) -> int:
    return max((o.arrival for oid, o in level.orders.items() if oid != level.tob_oid), default=0)


def _older_than(level: PriceLevel, arrival: int) -> list[tuple[int, Order]]:
    return [(oid, o) for oid, o in level.orders.items() if oid != level.tob_oid and o.arrival < arrival]


def _prefix_max(values: list[int]) -> list[int]:
    out: list[int] = []
    run = 0
    for v in values:
        run = max(run, v)
        out.append(run)
    return out


def _suffix_max(values: list[int]) -> list[int]:
    return _prefix_max(values[::-1])[::-1]
