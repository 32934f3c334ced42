"""A deterministic market simulator producing a realistic MBO stream for many instruments (pure: no I/O, no clock).

- Event times follow a self-exciting (Hawkes) process with an exponential kernel, simulated by Ogata thinning:
  activity clusters in bursts, with a mean of ``rate`` records per simulated second across instruments.
- Instruments differ in activity (Zipf-like weights); sizes are heavy-tailed (Pareto for resting orders,
  lognormal for aggressive ones).
- Resting orders are added near the touch, and most are cancelled; modifies lose priority (price change, size up)
  or keep it (size down); aggressive orders produce T records (aggressor side), then F records on the resting
  orders they hit, then the C records that change the book (Databento's convention), then possibly an A for the
  unfilled rest; only the last record of an event carries F_LAST. Some events batch several adds and cancels.
- Every instrument opens with a snapshot (R, then adds flagged F_SNAPSHOT), unless ``mid_session``: the initial
  orders then exist but were never published, and later cancels/modifies of them reach consumers as unknown.
- ``dup_rate``: a record is sent twice (same sequence) with this probability; ``malformed_rate``: after an event,
  a malformed message (invalid bytes for the topic) follows with this probability.

Everything comes from ``random.Random(seed)`` and a simulated clock starting at ``start_ns``: a seed gives the
same stream byte for byte.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate

from producers.simulator.book import SimBook
from producers.simulator.malformed import malformed_value
from topics.records import F_LAST, F_SNAPSHOT, UNDEF_PRICE, MboRecord

DEFAULT_START_NS = 1_704_205_800_000_000_000  # 2024-01-02T14:30:00Z
RECORDS_PER_EVENT = 1.42  # measured mean of this model; turns the record rate into an event rate
TICKS = (10_000_000, 250_000_000, 5_000_000)  # 0.01, 0.25, 0.005 in 1e-9 units


@dataclass(frozen=True)
class SimConfig:
    """What to simulate."""

    instruments: int = 10
    rate: float = 10_000.0  # mean records per simulated second, all instruments together
    seed: int = 1
    start_ns: int = DEFAULT_START_NS
    mid_session: bool = False
    dup_rate: float = 0.0
    malformed_rate: float = 0.0
    publisher_id: int = 100
    first_instrument_id: int = 10_001
    depth: int = 40  # resting orders an instrument tends to hold
    branching: float = 0.6  # Hawkes branching ratio: share of events triggered by earlier ones
    decay_s: float = 0.02  # how fast excitement fades (1/beta)

    def __post_init__(self) -> None:
        checks = (
            (self.instruments >= 1, "instruments must be at least 1"),
            (self.rate > 0, "rate must be positive"),
            (0 <= self.dup_rate < 1, "dup_rate must be in [0, 1)"),
            (0 <= self.malformed_rate < 1, "malformed_rate must be in [0, 1)"),
            (0 <= self.branching < 1, "branching must be in [0, 1)"),
            (self.decay_s > 0 and self.depth >= 1, "decay_s and depth must be positive"),
            (self.first_instrument_id + self.instruments <= 2**32, "instrument ids must fit 32 bits"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def symbol(self, instrument_id: int) -> str:
        return f"SIM{instrument_id - self.first_instrument_id:04d}"


@dataclass(frozen=True)
class SimEvent:
    """Records of one event of one instrument; the last one carries F_LAST."""

    records: list[MboRecord]


@dataclass(frozen=True)
class Malformed:
    """A message that is not a valid frame: ``kind`` says how it is broken."""

    key: bytes
    value: bytes
    kind: str


@dataclass
class SimStats:
    events: int = 0
    records: int = 0  # every record produced, duplicates included
    duplicates: int = 0
    malformed: int = 0
    by_action: dict[str, int] = field(default_factory=dict)


class Simulator:
    """Iterate :meth:`events` for the stream; ``hidden`` holds the ids of resting orders never published."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.stats = SimStats()
        self.hidden: set[int] = set()  # resting orders consumers never saw (mid-session start), still unseen
        self.unpublished: set[int] = set()  # every order of the unpublished opening book
        self._last_event: list[MboRecord] = []
        self.next_order_id = 1_000_000
        self.t = 0.0  # simulated seconds since start_ns
        self._last_recv = config.start_ns
        beta = 1.0 / config.decay_s
        event_rate = config.rate / RECORDS_PER_EVENT
        self._mu = event_rate * (1.0 - config.branching)
        self._alpha = config.branching * beta
        self._beta = beta
        self._excess = 0.0
        self.books = [self._new_book(i) for i in range(config.instruments)]
        weights = [1.0 / (rank + 1) ** 0.8 for rank in range(config.instruments)]
        self.rng.shuffle(weights)
        self._cum_weights = list(accumulate(weights))
        self.symbols = {b.instrument_id: config.symbol(b.instrument_id) for b in self.books}

    def _new_book(self, index: int) -> SimBook:
        tick = TICKS[index % len(TICKS)]
        mid = self.rng.randint(2_000, 40_000)
        return SimBook(self.config.first_instrument_id + index, tick, mid)

    # -- the stream ------------------------------------------------------------------------------------------------

    def events(self, until_s: float | None = None) -> Iterator[SimEvent | Malformed]:
        """The stream: the opening (snapshots, or nothing mid-session), then trading until ``until_s`` simulated
        seconds (forever when None)."""
        for book in self.books:
            opening = self._opening(book)
            if opening:
                yield self._emit(opening, duplicates=False)
        while True:
            t = self._next_time()
            if until_s is not None and t > until_s:
                return
            self.t = t
            book = self.books[self._pick_instrument()]
            yield self._emit(self._event(book))
            if self.config.malformed_rate and self.rng.random() < self.config.malformed_rate:
                self.stats.malformed += 1
                key, value, kind = malformed_value(self.rng, book.instrument_id, self._last_event)
                yield Malformed(key, value, kind)

    def take(self, records: int | None = None, duration_s: float | None = None) -> Iterator[SimEvent | Malformed]:
        """:meth:`events` until ``records`` records (the last event whole) or ``duration_s`` simulated seconds."""
        for item in self.events(duration_s):
            yield item
            if records is not None and self.stats.records >= records:
                return

    def _emit(self, records: list[MboRecord], duplicates: bool = True) -> SimEvent:
        out = records
        if duplicates and self.config.dup_rate:
            out = []
            for r in records:
                out.append(r)
                if self.rng.random() < self.config.dup_rate:
                    out.append(r)
                    self.stats.duplicates += 1
        self.stats.events += 1
        self.stats.records += len(out)
        for r in out:
            self.stats.by_action[r.action] = self.stats.by_action.get(r.action, 0) + 1
        self._last_event = records
        return SimEvent(out)

    def _next_time(self) -> float:
        """Next event time of the Hawkes process (Ogata thinning; intensity decays between events)."""
        rng = self.rng
        t = self.t
        while True:
            bound = self._mu + self._excess
            wait = rng.expovariate(bound)
            t += wait
            self._excess *= math.exp(-self._beta * wait)
            if rng.random() * bound <= self._mu + self._excess:
                self._excess += self._alpha
                return t

    def _pick_instrument(self) -> int:
        return bisect.bisect(self._cum_weights, self.rng.random() * self._cum_weights[-1], 0, len(self.books) - 1)

    # -- records ---------------------------------------------------------------------------------------------------

    def _stamp(self) -> tuple[int, int, int]:
        """(ts_event, ts_recv, ts_in_delta) of the current simulated time; ts_recv never goes back."""
        ts_event = self.config.start_ns + int(self.t * 1e9)
        latency = int(self.rng.lognormvariate(9.9, 0.4))  # about 20 us
        self._last_recv = max(self._last_recv + 1, ts_event + latency)
        return ts_event, self._last_recv, latency // 3

    def _records(self, book: SimBook, rows: list[tuple[str, str, int, int, int]], snapshot: bool = False) -> list[
            MboRecord]:
        """MboRecords of one event from (action, side, price ticks or UNDEF, size, order_id) rows."""
        ts_event, ts_recv, delta = self._stamp()
        out = []
        last = len(rows) - 1
        for i, (action, side, ticks, size, order_id) in enumerate(rows):
            flags = (F_LAST if i == last else 0) | (F_SNAPSHOT if snapshot else 0)
            price = UNDEF_PRICE if ticks == UNDEF_PRICE else ticks * book.tick
            out.append(MboRecord(
                ts_recv=ts_recv + i, ts_event=ts_event, publisher_id=self.config.publisher_id,
                instrument_id=book.instrument_id, action=action, side=side, price=price,  # type: ignore[arg-type]
                size=size, order_id=order_id, flags=flags, ts_in_delta=delta, sequence=book.next_sequence(),
            ))
        self._last_recv = ts_recv + last
        return out

    def _opening(self, book: SimBook) -> list[MboRecord]:
        rows: list[tuple[str, str, int, int, int]] = [("R", "N", UNDEF_PRICE, 0, 0)]
        for _ in range(self.config.depth):
            rows.append(self._passive(book))
        if self.config.mid_session:
            ids = {order_id for _, _, _, _, order_id in rows[1:]}
            self.hidden |= ids
            self.unpublished |= ids
            return []
        return self._records(book, rows, snapshot=True)

    def _event(self, book: SimBook) -> list[MboRecord]:
        n, depth = len(book), self.config.depth
        if n == 0:
            return self._records(book, [self._passive(book)])
        add, cancel = 0.42 * min(3.0, depth / n), 0.40 * min(3.0, n / depth)
        x = self.rng.random() * (add + cancel + 0.18)
        kind = "add" if x < add else "cancel" if x < add + cancel else "modify" if x < add + cancel + 0.10 \
            else "trade" if x < add + cancel + 0.16 else "batch"
        if kind == "cancel":
            return self._records(book, [self._cancel(book)])
        if kind == "modify":
            return self._records(book, [self._modify(book)])
        if kind == "trade":
            return self._records(book, self._aggressive(book))
        if kind == "batch":
            rows = [self._cancel(book) if len(book) > 1 and self.rng.random() < 0.5 else self._passive(book)
                    for _ in range(self.rng.randint(2, 5))]
            return self._records(book, rows)
        return self._records(book, [self._passive(book)])

    def _new_id(self) -> int:
        self.next_order_id += 1
        return self.next_order_id

    def _passive_price(self, book: SimBook, side: str) -> int:
        rng = self.rng
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None:
            book.mid = (bid + ask) // 2
        offset = int(rng.expovariate(0.45))  # ticks behind the touch, mostly near it
        if side == "B":
            ref = bid if bid is not None else (ask - 1 if ask is not None else book.mid)
            price = ref + 1 if ask is not None and bid is not None and ask - bid > 1 and rng.random() < 0.2 \
                else ref - offset
            return max(1, min(price, ask - 1) if ask is not None else price)
        ref = ask if ask is not None else (bid + 1 if bid is not None else book.mid + 1)
        price = ref - 1 if ask is not None and bid is not None and ask - bid > 1 and rng.random() < 0.2 \
            else ref + offset
        return max(price, bid + 1) if bid is not None else max(1, price)

    def _passive(self, book: SimBook) -> tuple[str, str, int, int, int]:
        side = "B" if self.rng.random() < 0.5 else "A"
        price = self._passive_price(book, side)
        size = min(5_000, int(self.rng.paretovariate(1.3)))
        order_id = self._new_id()
        book.add(order_id, side, price, size)
        return ("A", side, price, size, order_id)

    def _cancel(self, book: SimBook) -> tuple[str, str, int, int, int]:
        order_id = book.random_order(self.rng)
        order = book.remove(order_id)
        self.hidden.discard(order_id)
        return ("C", order.side, order.price, order.size, order_id)

    def _modify(self, book: SimBook) -> tuple[str, str, int, int, int]:
        rng = self.rng
        order_id = book.random_order(rng)
        order = book.orders[order_id]
        side, price, size = order.side, order.price, order.size
        choice = rng.random()
        if choice < 0.4 and size > 1:
            size = rng.randint(1, size - 1)  # size down: keeps priority
        elif choice < 0.7:
            size += min(5_000, int(rng.paretovariate(1.5)))  # size up: loses priority
        else:
            price = self._passive_price(book, side)  # price change: loses priority
        book.modify(order_id, price, size)
        self.hidden.discard(order_id)  # a consumer adds an unknown modified order
        return ("M", side, price, size, order_id)

    def _aggressive(self, book: SimBook) -> list[tuple[str, str, int, int, int]]:
        """T records, F on the resting orders hit, the C that change the book, maybe an A for the rest."""
        rng = self.rng
        side = "B" if rng.random() < 0.5 else "A"
        opposite = "A" if side == "B" else "B"
        levels = book.side_levels(opposite)
        if not levels:
            return [self._passive(book)]
        best = book.best_ask() if side == "B" else book.best_bid()
        assert best is not None
        reach = 0 if rng.random() < 0.6 else rng.randint(1, 2)
        limit = best + reach if side == "B" else best - reach
        remaining = int(rng.lognormvariate(1.2, 1.0)) + 1
        fills: list[tuple[int, int, int]] = []  # (order_id, price, size)
        prices = list(levels.irange(maximum=limit)) if side == "B" else list(levels.irange(minimum=limit, reverse=True))
        for price in prices:
            for order_id in list(levels[price]):
                take = min(remaining, book.orders[order_id].size)
                fills.append((order_id, price, take))
                remaining -= take
                if remaining == 0:
                    break
            if remaining == 0:
                break
        rows: list[tuple[str, str, int, int, int]] = [("T", side, p, s, 0) for _, p, s in fills]
        rows += [("F", opposite, p, s, oid) for oid, p, s in fills]
        for order_id, price, size in fills:
            book.reduce(order_id, size)
            rows.append(("C", opposite, price, size, order_id))
            if order_id not in book.orders:
                self.hidden.discard(order_id)
        if remaining and rng.random() < 0.5:
            order_id = self._new_id()
            book.add(order_id, side, limit, remaining)
            rows.append(("A", side, limit, remaining, order_id))
        return rows
