"""Cost of a book worker's checkpoint of one book: ``to_state()`` + MessagePack encoding against
``checkpoint_state()`` + encoding (each side written in C), on the ESH4 book at the end of the day.

    python bench/checkpoint.py                  # ESH4 2023-12-25, instrument 17077, 30 repetitions
    python bench/checkpoint.py --runs 100 --file path/to/file.mbo.dbn.zst --instrument 17077

Both are timed in wall-clock time on the same book, interleaved, and reported as min / median / max in ms; the
encoded bytes are checked to be identical.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processors.book import Book
from producers.readers import open_records
from streams import checkpoint as cp
from streams.publisher import PublishState

ESH4 = Path(__file__).resolve().parents[2] / "shared/data/databento/nautilus/esh4-glbx-mdp3-20231225.mbo.dbn.zst"


def encoded(book: Book, packed: bool) -> tuple[float, bytes]:
    started = time.perf_counter()
    state = book.checkpoint_state() if packed else book.to_state()
    data = cp.encode(cp.BookCheckpoint(partition=0, offset=0, book=state, publish=PublishState()))
    return time.perf_counter() - started, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=ESH4)
    parser.add_argument("--instrument", type=int, default=17077)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    book: Book | None = None
    for record in open_records(args.file):
        if record.instrument_id == args.instrument:
            book = book or Book(record.publisher_id, record.instrument_id)
            book.apply(record)
    if book is None:
        raise SystemExit(f"no record of instrument {args.instrument} in {args.file}")
    book.take_trades()  # as in a worker, which publishes a frame's trades as it applies it
    state = book.to_state()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average "
          f"{os.getloadavg()[0]:.2f}; engine {type(book).__module__}.{type(book).__name__}")
    print(f"book {args.instrument}: {book.order_count:,} orders, {len(state.bids)} bid and {len(state.asks)} ask "
          f"levels")
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.runs):
        for packed in (False, True):
            seconds, data = encoded(book, packed)
            times[packed].append(seconds)
        if encoded(book, True)[1] != encoded(book, False)[1]:
            raise SystemExit("checkpoint_state() and to_state() encode differently")
    for packed, label in ((False, "to_state() + encode"), (True, "checkpoint_state() + encode")):
        ms = [t * 1e3 for t in times[packed]]
        print(f"{label:<28} min {min(ms):.2f} ms  median {statistics.median(ms):.2f} ms  max {max(ms):.2f} ms  "
              f"({len(data):,} bytes)")
    ratio = statistics.median(times[False]) / statistics.median(times[True])
    print(f"checkpoint_state() is {ratio:.1f}x faster (medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
