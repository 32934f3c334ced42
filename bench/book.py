"""Speed of the L3 book engines on a real day: records/s per core, BBO read at every F_LAST, in process CPU time.

    python bench/book.py                     # ESH4 2023-12-25 (68,792 MBO records), best of 5, ~2 s per run
    python bench/book.py --runs 7 --seconds 3 --file path/to/file.mbo.dbn.zst

The file is applied in passes (a fresh book per pass) until a run lasts about ``--seconds`` of CPU; each path is
run ``--runs`` times and the best run is reported, with the spread (the machine is shared: CPU time, not wall
time, and the best run, are the fair figures). Paths, all on the same records and reading the BBO at each F_LAST:

* the pure-Python ``Book`` (the reference) and the compiled one, record by record with ``apply_fields`` from
  pre-decoded tuples (decode excluded); the compiled one in bulk over frame columns (``apply_frame_columns``,
  frames of 250 records as the producer makes them), reading the BBO in a Python ``on_point`` callback, or in C
  (``bbo_changes``: Level objects made only when the BBO changed);
* decode included, from the zstd-compressed DBN bytes in memory: databento_dbn's decoder then ``apply_fields``
  per record, or the raw-buffer path (``apply_dbn`` on chunks of 250 records);
* NautilusTrader's L3 ``OrderBook`` (optional: ``pip install nautilus_trader``), fed ``OrderBookDelta``s built
  once outside the timing, ``apply_delta`` plus best bid/ask price and size at each F_LAST;
* a plain dict + SortedDict L3 book written here (no idempotency, no stats, no queue positions).
"""

from __future__ import annotations

import argparse
import logging
import math
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import databento_dbn
import zstandard
from sortedcontainers import SortedDict

from processors.book import FastBook, PureBook
from processors.book.dbn import MBO_SIZE, dbn_body
from topics.records import F_LAST, UNDEF_PRICE

ESH4 = Path(__file__).resolve().parents[2] / "shared/data/databento/nautilus/esh4-glbx-mdp3-20231225.mbo.dbn.zst"
FRAME = 250
Row = tuple[str, str, int, int, int, int, int, int, int, int]  # apply_fields arguments
Columns = tuple[str, str, list[int], list[int], list[int], list[int], list[int], list[int], list[int], list[int]]


class Day:
    """One file in memory: compressed bytes, its MBO rows (pre-decoded) and the same rows as frame columns."""

    def __init__(self, path: Path) -> None:
        self.compressed = path.read_bytes()
        self.raw = decompress(self.compressed)
        decoder = databento_dbn.DBNDecoder()
        decoder.write(self.raw)
        msgs = [m for m in decoder.decode() if isinstance(m, databento_dbn.MBOMsg)]
        first = msgs[0]
        self.key = (int(first.publisher_id), first.instrument_id)
        self.rows: list[Row] = [
            (m.action.value, m.side.value, m.price, m.size, m.order_id, int(m.flags), m.sequence, m.channel_id,  # type: ignore[union-attr]
             m.ts_recv, m.ts_event)
            for m in msgs if (int(m.publisher_id), m.instrument_id) == self.key
        ]
        self.frames = [columns(self.rows[i:i + FRAME]) for i in range(0, len(self.rows), FRAME)]
        if len(dbn_body(self.raw)) != MBO_SIZE * len(msgs):
            raise SystemExit("the raw path's chunks assume a file of MBO records only")


def decompress(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()


def columns(rows: list[Row]) -> Columns:
    cols = list(zip(*rows, strict=True))
    return ("".join(cols[0]), "".join(cols[1]), *(list(c) for c in cols[2:]))  # type: ignore[return-value]


# ---------------------------------------------------------------- the paths: each makes one pass over the day

def per_record(cls: Any, day: Day) -> Callable[[], None]:
    def run() -> None:
        book = cls(*day.key)
        apply, bbo = book.apply_fields, book.bbo
        for row in day.rows:
            if apply(*row):
                bbo()
    return run


def bulk_callback(day: Day) -> Callable[[], None]:
    def run() -> None:
        book = FastBook(*day.key)
        bbo = book.bbo
        for cols in day.frames:
            book.apply_frame_columns(*cols, lambda _i: bbo())
    return run


def bulk_changes(day: Day) -> Callable[[], None]:
    def run() -> None:
        book = FastBook(*day.key)
        for cols in day.frames:
            book.apply_frame_columns(*cols, None, [])
    return run


def decoded_by_databento(day: Day) -> Callable[[], None]:
    def run() -> None:
        book = FastBook(*day.key)
        apply, bbo = book.apply_fields, book.bbo
        decoder = databento_dbn.DBNDecoder()
        decoder.write(decompress(day.compressed))
        for m in decoder.decode():
            if isinstance(m, databento_dbn.MBOMsg) and apply(
                m.action.value, m.side.value, m.price, m.size, m.order_id, m.flags, m.sequence, m.channel_id,  # type: ignore[union-attr]
                m.ts_recv, m.ts_event,
            ):
                bbo()
    return run


def decoded_raw(day: Day, in_c: bool) -> Callable[[], None]:
    """Chunks of 250 records, as a stream would arrive (the file holds MBO records only: 56 bytes each); a
    fresh ``bbo_changes`` list per chunk, as a consumer would drain it (one list for a whole day keeps tens of
    thousands of tuples alive, and the garbage collector's passes over them would be what is measured)."""
    step = FRAME * MBO_SIZE

    def run() -> None:
        book = FastBook(*day.key)
        body = dbn_body(decompress(day.compressed))
        bbo = book.bbo
        for start in range(0, len(body), step):
            if in_c:
                book.apply_dbn(body[start:start + step], None, [])
            else:
                book.apply_dbn(body[start:start + step], lambda _i: bbo())
    return run


class SortedDictBook:
    """A minimal L3 book: dict order id -> [side, price, size]; per side a SortedDict price -> [size, count]."""

    def __init__(self) -> None:
        self.orders: dict[int, list[Any]] = {}
        self.sides: dict[str, SortedDict] = {"B": SortedDict(), "A": SortedDict()}

    def apply(self, action: str, side: str, price: int, size: int, oid: int) -> None:
        if action == "A":
            if side in self.sides and price != UNDEF_PRICE and size > 0:
                self._drop(oid)
                self._put(oid, side, price, size)
        elif action == "C":
            order = self.orders.get(oid)
            if order is not None:
                if size >= order[2]:
                    self._drop(oid)
                else:
                    order[2] -= size
                    self.sides[order[0]][order[1]][0] -= size
        elif action == "M":
            if side in self.sides:
                self._drop(oid)
                if size > 0:
                    self._put(oid, side, price, size)
        elif action == "R":
            self.orders.clear()
            self.sides["B"].clear()
            self.sides["A"].clear()

    def _put(self, oid: int, side: str, price: int, size: int) -> None:
        self.orders[oid] = [side, price, size]
        level = self.sides[side].get(price)
        if level is None:
            self.sides[side][price] = [size, 1]
        else:
            level[0] += size
            level[1] += 1

    def _drop(self, oid: int) -> None:
        order = self.orders.pop(oid, None)
        if order is not None:
            levels = self.sides[order[0]]
            level = levels[order[1]]
            level[0] -= order[2]
            level[1] -= 1
            if not level[1]:
                del levels[order[1]]

    def bbo(self) -> tuple[tuple[int, list[int]] | None, tuple[int, list[int]] | None]:
        bids, asks = self.sides["B"], self.sides["A"]
        return (bids.peekitem(-1) if bids else None, asks.peekitem(0) if asks else None)


def sorted_dict(day: Day) -> Callable[[], None]:
    rows = [(r[0], r[1], r[2], r[3], r[4], r[5] & F_LAST) for r in day.rows]

    def run() -> None:
        book = SortedDictBook()
        apply, bbo = book.apply, book.bbo
        for action, side, price, size, oid, last in rows:
            apply(action, side, price, size, oid)
            if last:
                bbo()
    return run


def nautilus(day: Day) -> tuple[Callable[[], None], str] | str:
    """NautilusTrader's L3 OrderBook on deltas converted once here; or why it is skipped."""
    try:
        import nautilus_trader
        from nautilus_trader.model.book import OrderBook
        from nautilus_trader.model.enums import BookType
    except ImportError:
        return "nautilus_trader is not installed (pip install nautilus_trader==1.221.0 --no-deps + its deps)"
    instrument, items = nautilus_deltas(day.rows)
    check = OrderBook(instrument, BookType.L3_MBO)
    for delta, _ in items:
        if delta is not None:
            check.apply_delta(delta)
    ours = FastBook(*day.key) if FastBook is not None else PureBook(*day.key)
    for row in day.rows:
        ours.apply_fields(*row)
    theirs = [(int(lv.price.as_double() * 100), int(lv.size())) for lv in check.bids()[:10]]
    if theirs != [(lv.price // 10_000_000, lv.size) for lv in ours.levels("B")]:
        return "its book after the day differs from ours: the delta conversion is wrong"

    def run() -> None:
        book = OrderBook(instrument, BookType.L3_MBO)
        apply = book.apply_delta
        for delta, last in items:
            if delta is not None:
                apply(delta)
            if last:
                book.best_bid_price(), book.best_bid_size(), book.best_ask_price(), book.best_ask_size()
    return run, f"NautilusTrader {nautilus_trader.__version__} L3 OrderBook: apply_delta + best bid/ask"


def nautilus_deltas(rows: list[Row]) -> tuple[Any, list[tuple[Any, bool]]]:
    """Each record as a NautilusTrader delta (None for T, F, N: no book change) and whether it ends an event.

    Databento's rules in Nautilus terms: A adds; C updates the order to what is left, or deletes it; M of an
    unknown order adds, size 0 deletes, otherwise updates (price, size); R clears.
    """
    from nautilus_trader.model.data import BookOrder, OrderBookDelta
    from nautilus_trader.model.enums import BookAction, OrderSide
    from nautilus_trader.model.identifiers import InstrumentId
    from nautilus_trader.model.objects import FIXED_PRECISION, Price, Quantity

    instrument = InstrumentId.from_str("ESH4.GLBX")
    scale = 10 ** (FIXED_PRECISION - 9)
    resting: dict[int, tuple[str, int, int]] = {}
    items: list[tuple[Any, bool]] = []

    def delta(action: Any, side: str, price: int, size: int, oid: int, flags: int, seq: int, ts: int) -> Any:
        order = BookOrder(OrderSide.BUY if side == "B" else OrderSide.SELL, Price.from_raw(price * scale, 9),
                          Quantity(size, 0), oid)
        return OrderBookDelta(instrument, action, order, flags, seq, ts, ts)

    for action, side, price, size, oid, flags, seq, _, ts_recv, _ in rows:
        made = None
        old = resting.get(oid)
        if action == "A" or (action == "M" and old is None and size > 0):
            resting[oid] = (side, price, size)
            made = delta(BookAction.ADD, side, price, size, oid, flags, seq, ts_recv)
        elif action in "CM" and old is not None:
            left = old[2] - size if action == "C" else size
            if left > 0:
                resting[oid] = (old[0], old[1], left) if action == "C" else (side, price, size)
                made = delta(BookAction.UPDATE, *resting[oid], oid, flags, seq, ts_recv)
            else:
                del resting[oid]
                made = delta(BookAction.DELETE, old[0], old[1], old[2], oid, flags, seq, ts_recv)
        elif action == "R":
            resting.clear()
            made = OrderBookDelta.clear(instrument, seq, ts_recv, ts_recv)
        items.append((made, bool(flags & F_LAST)))
    return instrument, items


# ---------------------------------------------------------------- timing and report

def measure(run: Callable[[], None], records: int, runs: int, seconds: float) -> tuple[float, float]:
    """Best and worst records/s (CPU time) over ``runs`` runs of enough passes to last about ``seconds``."""
    t0 = time.process_time()
    run()
    passes = max(1, math.ceil(seconds / max(time.process_time() - t0, 1e-6)))
    rates = []
    for _ in range(runs):
        t0 = time.process_time()
        for _ in range(passes):
            run()
        rates.append(passes * records / (time.process_time() - t0))
    return max(rates), min(rates)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


def paths(day: Day) -> list[tuple[str, Callable[[], None] | str]]:
    fast: list[tuple[str, Callable[[], None] | str]]
    if FastBook is None:
        fast = [("compiled Book", "the compiled engine is not built (pip install -e .)")]
    else:
        fast = [
            ("compiled Book: apply_fields per record + bbo()", per_record(FastBook, day)),
            ("compiled Book: apply_frame_columns (250) + on_point bbo()", bulk_callback(day)),
            ("compiled Book: apply_frame_columns (250) + bbo_changes in C", bulk_changes(day)),
            ("decode incl.: zstd + databento_dbn + apply_fields + bbo()", decoded_by_databento(day)),
            ("decode incl.: zstd + raw apply_dbn (250) + on_point bbo()", decoded_raw(day, in_c=False)),
            ("decode incl.: zstd + raw apply_dbn (250) + bbo_changes in C", decoded_raw(day, in_c=True)),
        ]
    nt = nautilus(day)
    return [
        ("pure Book: apply_fields per record + bbo()", per_record(PureBook, day)),
        *fast,
        (nt[1], nt[0]) if isinstance(nt, tuple) else ("NautilusTrader L3 OrderBook", nt),
        ("dict + SortedDict L3 book (bench-local) + best bid/ask", sorted_dict(day)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--file", type=Path, default=ESH4)
    parser.add_argument("--runs", type=int, default=5, help="runs per path; the best is reported")
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per run (whole passes)")
    args = parser.parse_args(argv)
    logging.getLogger("processors.book").setLevel(logging.ERROR)
    day = Day(args.file)
    print(f"file {args.file.name}: {len(day.rows):,} MBO records of {day.key}; CPU {cpu_model()}; "
          f"python {platform.python_version()}; best of {args.runs} runs of ~{args.seconds:g} s CPU")
    results: dict[str, float] = {}
    for name, run in paths(day):
        if isinstance(run, str):
            print(f"  {name:<62} skipped: {run}")
            continue
        best, worst = measure(run, len(day.rows), args.runs, args.seconds)
        results[name] = best
        base = results.get("pure Book: apply_fields per record + bbo()", best)
        print(f"  {name:<62} {best:>12,.0f} records/s  (worst {worst:>10,.0f})  x{best / base:5.1f} pure")
    print_ratios(results)
    return 0


def print_ratios(results: dict[str, float]) -> None:
    others = [(n, r) for n, r in results.items() if n.startswith(("NautilusTrader", "dict + SortedDict"))]
    ours = [(n, r) for n, r in results.items() if n.startswith(("compiled", "decode", "pure"))]
    for other, rate in others:
        print(f"ratios to {other}:")
        for name, ours_rate in ours:
            print(f"  {name:<62} x{ours_rate / rate:6.2f}")


if __name__ == "__main__":
    sys.exit(main())
