"""An L3 order book for one (publisher_id, instrument_id), following Databento's MBO rules.

Orders live in a dict by order id; each side is a SortedDict of price -> level, and a level holds its orders in
priority order (a dict keyed by order id: insertion order is time priority, deleting and re-inserting moves an
order to the back, updating in place keeps its place) with its total size kept up to date. The best price of each
side is cached. Every record goes through :meth:`Book.apply_fields`; see docs/book.md for the rules.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Final

from sortedcontainers import SortedDict

from processors.book import crossing
from processors.book.bulk import BulkFeeding
from processors.book.dedup import Deduper
from processors.book.errors import PolicyError, SideError, StateError, WrongBookError
from processors.book.levels import Order, PriceLevel
from processors.book.state import STATE_VERSION, BookState, LevelState, copy_stats, level_state
from processors.book.stats import BookStats
from topics.logs import RateLimitedLog
from topics.records import F_LAST, F_MAYBE_BAD_BOOK, F_SNAPSHOT, F_TOB, UNDEF_PRICE, BookTrade, Level, MboRecord

logger = logging.getLogger(__name__)

POLICIES: Final = ("keep", "match", "drop-stale")
_NS = 1e-9


class Book(BulkFeeding):
    """One instrument's book. Feed it records in order with :meth:`apply` or :meth:`apply_fields` (or in bulk:
    :class:`BulkFeeding`). The reference engine: ``processors.book._fastbook.Book`` is its compiled twin."""

    def __init__(
        self, publisher_id: int, instrument_id: int, crossed_policy: str = "keep", *,
        max_pending_trades: int = 100_000,
    ) -> None:
        if crossed_policy not in POLICIES:
            raise PolicyError(f"crossed_policy {crossed_policy!r} is not one of {', '.join(POLICIES)}")
        self.publisher_id = publisher_id
        self.instrument_id = instrument_id
        self.crossed_policy = crossed_policy
        self.stats = BookStats()
        self._orders: dict[int, Order] = {}
        self._bids: SortedDict = SortedDict()  # price -> PriceLevel, best = last
        self._asks: SortedDict = SortedDict()  # price -> PriceLevel, best = first
        self._best_bid: int | None = None
        self._best_ask: int | None = None
        self._arrival = 0
        self._dedup = Deduper()
        self._trades: deque[BookTrade] = deque()
        self._max_pending_trades = max_pending_trades
        self._log = RateLimitedLog(logger)
        self._dup_run = 0  # duplicates skipped since the last applied record

    # ---------------------------------------------------------------- feeding

    def apply(self, rec: MboRecord) -> bool:
        """Apply one record; True when it was applied and carries F_LAST (the book is consistent: publish now)."""
        if rec.instrument_id != self.instrument_id or rec.publisher_id != self.publisher_id:
            raise WrongBookError(
                f"record of ({rec.publisher_id}, {rec.instrument_id}) given to book "
                f"({self.publisher_id}, {self.instrument_id})"
            )
        return self.apply_fields(
            rec.action, rec.side, rec.price, rec.size, rec.order_id, rec.flags, rec.sequence, rec.channel_id,
            rec.ts_recv, rec.ts_event,
        )

    def apply_fields(
        self, action: str, side: str, price: int, size: int, order_id: int, flags: int, sequence: int,
        channel_id: int, ts_recv: int, ts_event: int,
    ) -> bool:
        """Apply one record given field by field; same result as :meth:`apply`. Duplicates return False."""
        stats = self.stats
        stats.records += 1
        dedup = self._dedup
        if (flags & F_SNAPSHOT and action == "A") or action == "R":
            if not self._accept_restart(action, side, price, size, order_id, flags, ts_recv):
                return self._skip_duplicate(ts_recv)
        else:
            channel = dedup.channels.get(channel_id) or dedup.channel(channel_id)
            if ts_recv < dedup.last_clear_ts or channel.is_duplicate(
                sequence, (action, side, price, size, order_id, flags, ts_recv, ts_event)
            ):
                return self._skip_duplicate(ts_recv)
            if dedup.snapshot_open:
                dedup.snapshot_open = dedup.after_clear = False
        if ts_recv > dedup.ts_high:
            dedup.ts_high = ts_recv
        if self._dup_run:
            self._end_duplicate_run()
        by_action = stats.by_action
        by_action[action] = by_action.get(action, 0) + 1
        if flags & F_MAYBE_BAD_BOOK:
            stats.maybe_bad_book += 1
        if action == "A":
            if flags & F_TOB:
                self._set_top(side, price, size, order_id, ts_recv)
            else:
                self._add(side, price, size, order_id, ts_recv)
        elif action == "C":
            self._cancel(side, size, order_id, ts_recv)
        elif action == "M":
            self._modify(side, price, size, order_id, ts_recv)
        elif action == "T":
            self._trade(side, price, size, order_id, sequence, ts_recv, ts_event)
        elif action == "R":
            self._clear()
            stats.clears += 1
            dedup.last_clear_ts = ts_recv
        elif action not in "FN" or len(action) != 1:
            self._bad(ts_recv, "unknown action %r", action)
        if flags & F_LAST:
            stats.consistency_points += 1
            bid, ask = self._best_bid, self._best_ask
            if bid is not None and ask is not None and bid >= ask:
                self._handle_crossed(bid, ask, sequence, ts_recv, ts_event)
            else:
                stats.crossed_now = False
            return True
        return False

    def _skip_duplicate(self, ts_recv: int) -> bool:
        self.stats.duplicates_skipped += 1
        if not self._dup_run:
            self._log.warning(
                "duplicate", ts_recv * _NS, "book %d/%d: skipping already applied records (a replay?)",
                self.publisher_id, self.instrument_id,
            )
        self._dup_run += 1
        return False

    def _end_duplicate_run(self) -> None:
        logger.info(
            "book %d/%d: applying again after %d already applied records", self.publisher_id,
            self.instrument_id, self._dup_run,
        )
        self._dup_run = 0

    def _accept_restart(
        self, action: str, side: str, price: int, size: int, order_id: int, flags: int, ts_recv: int,
    ) -> bool:
        """Whether an R or an F_SNAPSHOT add is new; a new snapshot clears the book and restarts sequences."""
        dedup = self._dedup
        if action == "R":
            if dedup.clear_is_duplicate(ts_recv):
                return False
            dedup.restart_sequences()
            dedup.snapshot_open = True
            dedup.after_clear = True
            return True
        if ts_recv < dedup.ts_high:
            return False
        resting = self._orders.get(order_id)
        held = resting is not None and (resting.side, resting.price, resting.size) == (side, price, size)
        if not dedup.snapshot_open:
            if held and ts_recv == dedup.ts_high:
                return False  # the snapshot this book already holds, replayed
            self._clear()  # a snapshot without its R: it replaces the whole book all the same
            dedup.last_clear_ts = ts_recv
            dedup.restart_sequences()
            dedup.snapshot_open = True
            self.stats.snapshots += 1
        elif held:
            return False  # listed twice in one snapshot
        elif dedup.after_clear:
            self.stats.snapshots += 1
        dedup.after_clear = False
        if flags & F_LAST:
            dedup.snapshot_open = False
        return True

    # ---------------------------------------------------------------- actions

    def _add(self, side: str, price: int, size: int, order_id: int, ts_recv: int) -> None:
        if (side != "B" and side != "A") or price == UNDEF_PRICE or size <= 0:
            self._bad(ts_recv, "add of order %d with side %r, price %d, size %d", order_id, side, price, size)
            return
        old = self._orders.get(order_id)
        if old is not None:
            self.stats.duplicate_adds += 1
            self._log.warning(
                "duplicate_add", ts_recv * _NS, "book %d/%d: add of resting order %d replaces it",
                self.publisher_id, self.instrument_id, order_id,
            )
            self._remove(order_id, old)
        self._place(order_id, side, price, size)

    def _cancel(self, side: str, size: int, order_id: int, ts_recv: int) -> None:
        if side != "B" and side != "A":
            self._bad(ts_recv, "cancel of order %d with side %r", order_id, side)
            return
        order = self._orders.get(order_id)
        if order is None:
            self.stats.unknown_cancels += 1
            self._log.warning(
                "unknown_cancel", ts_recv * _NS, "book %d/%d: cancel of unknown order %d",
                self.publisher_id, self.instrument_id, order_id,
            )
            return
        if size < order.size:
            order.size -= size
            self._side_book(order.side)[order.price].total -= size
            return
        if size > order.size:
            self.stats.over_cancels += 1
            self._log.warning(
                "over_cancel", ts_recv * _NS, "book %d/%d: cancel of %d from order %d holding %d",
                self.publisher_id, self.instrument_id, size, order_id, order.size,
            )
        self._remove(order_id, order)

    def _modify(self, side: str, price: int, size: int, order_id: int, ts_recv: int) -> None:
        if (side != "B" and side != "A") or price == UNDEF_PRICE:
            self._bad(ts_recv, "modify of order %d with side %r, price %d", order_id, side, price)
            return
        order = self._orders.get(order_id)
        if order is None:
            self.stats.unknown_modifies += 1
            self._log.warning(
                "unknown_modify", ts_recv * _NS, "book %d/%d: modify of unknown order %d, added",
                self.publisher_id, self.instrument_id, order_id,
            )
            if size > 0:
                self._place(order_id, side, price, size)
            return
        if size == 0 or order.side != side or order.price != price:
            self._remove(order_id, order)
            if size > 0:
                self._place(order_id, side, price, size)
            return
        level = self._side_book(side)[price]
        level.total += size - order.size
        if size > order.size:  # loses priority: back of the queue
            del level.orders[order_id]
            level.orders[order_id] = order
            self._arrival += 1
            order.arrival = self._arrival
        order.size = size

    def _trade(
        self, side: str, price: int, size: int, order_id: int, sequence: int, ts_recv: int, ts_event: int,
    ) -> None:
        if side != "B" and side != "A" and side != "N":
            self._bad(ts_recv, "trade of order %d with side %r", order_id, side)
            return
        self._push_trade(BookTrade(
            publisher_id=self.publisher_id, instrument_id=self.instrument_id, ts_event=ts_event, ts_recv=ts_recv,
            sequence=sequence, price=price, size=size, side=side, order_id=order_id,  # type: ignore[arg-type]
        ))

    def _set_top(self, side: str, price: int, size: int, order_id: int, ts_recv: int) -> None:
        """F_TOB add: the whole side becomes one level (or nothing, for an undefined price)."""
        if side != "B" and side != "A":
            self._bad(ts_recv, "top-of-book add with side %r", side)
            return
        self.stats.tob_updates += 1
        book = self._side_book(side)
        for level in book.values():
            for oid in level.orders:
                if oid != level.tob_oid:
                    del self._orders[oid]
        book.clear()
        best: int | None = None
        if price != UNDEF_PRICE:
            level = book[price] = PriceLevel()
            self._arrival += 1
            level.orders[order_id] = Order(side, price, size, self._arrival)
            level.total = size
            level.tob_oid = order_id
            best = price
        if side == "B":
            self._best_bid = best
        else:
            self._best_ask = best

    def _clear(self) -> None:
        self._orders.clear()
        self._bids.clear()
        self._asks.clear()
        self._best_bid = None
        self._best_ask = None

    def _bad(self, ts_recv: int, msg: str, *args: object) -> None:
        self.stats.bad_records += 1
        self._log.warning(
            "bad_record", ts_recv * _NS, "book %d/%d: bad record, not applied: " + msg,
            self.publisher_id, self.instrument_id, *args,
        )

    # ---------------------------------------------------------------- structure

    def _side_book(self, side: str) -> SortedDict:
        return self._bids if side == "B" else self._asks

    def _query_side(self, side: str) -> SortedDict:
        if side == "B":
            return self._bids
        if side == "A":
            return self._asks
        raise SideError(f"side {side!r}: expected 'B' (bids) or 'A' (asks)")

    def _place(self, order_id: int, side: str, price: int, size: int, arrival: int = 0) -> None:
        """Put an order at the back of its level (a new arrival unless ``arrival`` is given)."""
        if not arrival:
            self._arrival += 1
            arrival = self._arrival
        order = Order(side, price, size, arrival)
        self._orders[order_id] = order
        if side == "B":
            level = self._bids.get(price)
            if level is None:
                level = self._bids[price] = PriceLevel()
                if self._best_bid is None or price > self._best_bid:
                    self._best_bid = price
        else:
            level = self._asks.get(price)
            if level is None:
                level = self._asks[price] = PriceLevel()
                if self._best_ask is None or price < self._best_ask:
                    self._best_ask = price
        level.orders[order_id] = order
        level.total += size

    def _remove(self, order_id: int, order: Order) -> None:
        """Take an order (or an F_TOB entry) out of the book."""
        price = order.price
        if order.side == "B":
            level = self._bids[price]
            self._forget(order_id, level)
            del level.orders[order_id]
            level.total -= order.size
            if not level.orders:
                del self._bids[price]
                if price == self._best_bid:
                    self._best_bid = self._bids.peekitem(-1)[0] if self._bids else None
        else:
            level = self._asks[price]
            self._forget(order_id, level)
            del level.orders[order_id]
            level.total -= order.size
            if not level.orders:
                del self._asks[price]
                if price == self._best_ask:
                    self._best_ask = self._asks.peekitem(0)[0] if self._asks else None

    def _forget(self, order_id: int, level: PriceLevel) -> None:
        if level.tob_oid == order_id:
            level.tob_oid = None
        else:
            del self._orders[order_id]

    def _reduce(self, order_id: int, order: Order, size: int) -> None:
        """Take ``size`` off an order, removing it at zero (used by the crossed-book policies)."""
        if size >= order.size:
            self._remove(order_id, order)
        else:
            order.size -= size
            self._side_book(order.side)[order.price].total -= size

    def _push_trade(self, trade: BookTrade) -> None:
        if len(self._trades) >= self._max_pending_trades:
            self._trades.popleft()
            self.stats.trades_dropped += 1
        self._trades.append(trade)

    # ---------------------------------------------------------------- consistency points

    def _handle_crossed(self, bid: int, ask: int, sequence: int, ts_recv: int, ts_event: int) -> None:
        """At a consistency point with best bid >= best ask: count, report, then apply the policy."""
        stats = self.stats
        stats.crossings += 1
        if bid == ask:
            stats.locked += 1
        if not stats.crossed_now:
            self._log.warning(
                "crossed", ts_recv * _NS, "book %d/%d crossed at sequence %d: bid %d >= ask %d (policy %s)",
                self.publisher_id, self.instrument_id, sequence, bid, ask, self.crossed_policy,
            )
        stats.crossed_now = True
        if self.crossed_policy == "match":
            stats.synthetic_fills += crossing.match(self, sequence, ts_recv, ts_event)
        elif self.crossed_policy == "drop-stale":
            stats.stale_dropped += crossing.drop_stale(self)

    # ---------------------------------------------------------------- queries

    def bbo(self) -> tuple[Level | None, Level | None]:
        """Best bid and best ask as (price, size, count); None for an empty side."""
        bid, ask = self._best_bid, self._best_ask
        if bid is None:
            bid_level = None
        else:
            lv = self._bids[bid]
            bid_level = Level(bid, lv.total, len(lv.orders) - (lv.tob_oid is not None))
        if ask is None:
            return bid_level, None
        lv = self._asks[ask]
        return bid_level, Level(ask, lv.total, len(lv.orders) - (lv.tob_oid is not None))

    def levels(self, side: str, depth: int = 10) -> list[Level]:
        """Up to ``depth`` aggregated levels of ``side`` ("B" or "A"), best first."""
        book = self._query_side(side)
        n = min(depth, len(book))
        if n <= 0:
            return []
        keys = book.keys()
        prices = reversed(keys[-n:]) if side == "B" else keys[:n]
        return [book[p].level(p) for p in prices]

    def depth_of(self, side: str, price: int) -> int | None:
        """Index of the level at ``price`` on ``side`` (0 = best), or None when there is none."""
        book = self._query_side(side)
        if price not in book:
            return None
        index: int = book.index(price)
        return len(book) - 1 - index if side == "B" else index

    def queue(self, side: str, price: int) -> list[tuple[int, int]]:
        """(order_id, size) of the orders at ``price`` on ``side``, in priority order."""
        level = self._query_side(side).get(price)
        if level is None:
            return []
        return [(oid, order.size) for oid, order in level.orders.items()]

    def order(self, order_id: int) -> tuple[str, int, int] | None:
        """(side, price, size) of a resting order, or None."""
        o = self._orders.get(order_id)
        return None if o is None else (o.side, o.price, o.size)

    @property
    def order_count(self) -> int:
        """Resting orders (F_TOB entries are not orders)."""
        return len(self._orders)

    def is_crossed(self) -> bool:
        """Best bid >= best ask now (after the policy acted at the last consistency point)."""
        bid, ask = self._best_bid, self._best_ask
        return bid is not None and ask is not None and bid >= ask

    def take_trades(self) -> list[BookTrade]:
        """Trades seen (action T) and synthetic fills of the `match` policy since the last call, in order."""
        trades = list(self._trades)
        self._trades.clear()
        return trades

    # ---------------------------------------------------------------- state

    def to_state(self) -> BookState:
        """Everything needed to rebuild this book exactly (see :class:`BookState`)."""
        return BookState(
            version=STATE_VERSION, publisher_id=self.publisher_id, instrument_id=self.instrument_id,
            crossed_policy=self.crossed_policy,
            bids=[level_state(p, self._bids[p]) for p in reversed(self._bids)],
            asks=[level_state(p, lvl) for p, lvl in self._asks.items()],
            arrival=self._arrival, stats=copy_stats(self.stats), dedup=self._dedup.to_state(),
            trades=list(self._trades),
        )

    def checkpoint_state(self) -> BookState:
        """:meth:`to_state` for writing (the compiled engine pre-encodes its orders; this one has nothing to gain)."""
        return self.to_state()

    @classmethod
    def from_state(cls, state: BookState, *, max_pending_trades: int = 100_000) -> Book:
        """A book identical to the one that produced ``state``."""
        if state.version != STATE_VERSION:
            raise StateError(f"book state version {state.version}, this engine reads {STATE_VERSION}")
        book = cls(state.publisher_id, state.instrument_id, state.crossed_policy,
                   max_pending_trades=max_pending_trades)
        for side, levels in (("B", state.bids), ("A", state.asks)):
            for ls in levels:
                book._restore_level(side, ls)
        book._arrival = state.arrival
        book.stats = copy_stats(state.stats)
        book._dedup = Deduper.from_state(state.dedup)
        book._trades.extend(state.trades)
        return book

    def _restore_level(self, side: str, ls: LevelState) -> None:
        if not ls.orders:
            raise StateError(f"empty level at {ls.price} on side {side}")
        for os_ in ls.orders:
            if ls.tob_order_id is not None and os_.order_id == ls.tob_order_id:
                level = self._side_book(side).setdefault(ls.price, PriceLevel())
                level.orders[os_.order_id] = Order(side, ls.price, os_.size, os_.arrival)
                level.total += os_.size
                level.tob_oid = os_.order_id
            elif os_.order_id in self._orders:
                raise StateError(f"order {os_.order_id} is listed twice (level {ls.price}, side {side})")
            else:
                self._place(os_.order_id, side, ls.price, os_.size, os_.arrival)
        self._best_bid = self._bids.peekitem(-1)[0] if self._bids else None
        self._best_ask = self._asks.peekitem(0)[0] if self._asks else None

