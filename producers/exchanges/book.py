"""An L2 book of one venue and symbol: exact fixed-point price levels in sorted maps.

Pure data structure: no I/O, no clock. Bids are kept under negated keys so that both sides iterate best first.
"""

from __future__ import annotations

from sortedcontainers import SortedDict

from producers.exchanges.fixed import _cache as fixed_memo
from producers.exchanges.fixed import fx
from topics.records import L2Level

Level = tuple[int, int]  # (price, size), 1e-9 fixed point


class L2Book:
    """Price -> size per side, best first; ``synced`` is False until a snapshot was applied."""

    __slots__ = ("_asks", "_bids", "sequence", "synced")

    def __init__(self) -> None:
        self._bids: SortedDict = SortedDict()  # -price -> size
        self._asks: SortedDict = SortedDict()  # price -> size
        self.synced = False
        self.sequence = 0  # the venue's last applied update id / sequence / timestamp

    def clear(self) -> None:
        self._bids.clear()
        self._asks.clear()
        self.synced = False
        self.sequence = 0

    def set_bid(self, price: int, size: int) -> None:
        if size:
            self._bids[-price] = size
        else:
            self._bids.pop(-price, None)

    def set_ask(self, price: int, size: int) -> None:
        if size:
            self._asks[price] = size
        else:
            self._asks.pop(price, None)

    def apply(self, bids: list[L2Level], asks: list[L2Level]) -> None:
        for lv in bids:
            self.set_bid(lv.price, lv.size)
        for lv in asks:
            self.set_ask(lv.price, lv.size)

    def apply_text(self, bids: list[list[str]], asks: list[list[str]]) -> tuple[list[L2Level], list[L2Level]]:
        """Parse ``[[price, size, ...], ...]`` decimal text exactly and apply it; returns the parsed levels.

        The hot path of depth feeds: one pass per level, sizes already present updated in place.
        """
        return _apply_side(self._bids, bids, -1), _apply_side(self._asks, asks, 1)

    def replace(self, bids: list[L2Level], asks: list[L2Level], sequence: int = 0) -> None:
        """Load a snapshot: the levels replace the whole book, which is then synced."""
        self.clear()
        self.apply(bids, asks)
        self.synced = True
        self.sequence = sequence

    def has_bid(self, price: int) -> bool:
        return -price in self._bids

    def has_ask(self, price: int) -> bool:
        return price in self._asks

    def best_bid(self) -> Level | None:
        if not self._bids:
            return None
        key, size = self._bids.peekitem(0)
        return -key, size

    def best_ask(self) -> Level | None:
        if not self._asks:
            return None
        return self._asks.peekitem(0)

    def bids(self, depth: int | None = None) -> list[Level]:
        """Bid levels, best (highest) first, at most ``depth``."""
        keys = self._bids.keys()[:depth] if depth is not None else self._bids.keys()
        return [(-k, self._bids[k]) for k in keys]

    def asks(self, depth: int | None = None) -> list[Level]:
        """Ask levels, best (lowest) first, at most ``depth``."""
        keys = self._asks.keys()[:depth] if depth is not None else self._asks.keys()
        return [(k, self._asks[k]) for k in keys]

    def truncate(self, depth: int) -> None:
        """Keep the best ``depth`` levels per side (venues that stop sending levels that fall out of scope)."""
        for side in (self._bids, self._asks):
            while len(side) > depth:
                side.popitem(-1)

    def crossed(self) -> bool:
        bid, ask = self.best_bid(), self.best_ask()
        return bid is not None and ask is not None and bid[0] >= ask[0]

    def depth(self) -> tuple[int, int]:
        return len(self._bids), len(self._asks)

    def levels(self) -> tuple[list[L2Level], list[L2Level]]:
        """The whole book as snapshot levels (bids best first, asks best first)."""
        return [L2Level(p, s) for p, s in self.bids()], [L2Level(p, s) for p, s in self.asks()]


def _apply_side(side: SortedDict, rows: list[list[str]], sign: int) -> list[L2Level]:
    out: list[L2Level] = []
    append, has, memo = out.append, side.__contains__, fixed_memo.get
    for row in rows:
        text = row[0]
        price = memo(text)
        if price is None:
            price = fx(text, "price")
        text = row[1]
        size = memo(text)
        if size is None:
            size = fx(text, "size")
        key = sign * price
        if size:
            if has(key):
                dict.__setitem__(side, key, size)  # same key set: no re-sort needed
            else:
                side[key] = size
        elif has(key):
            del side[key]
        append(L2Level(price, size))
    return out
