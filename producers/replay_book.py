"""Replay MBO files through the book engine: MBP-10 CSV output, a final summary, a progress line.

Used by ``orderflow book replay``; :func:`replay` is the whole job and returns what the summary prints.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from processors.book import Book, Market
from producers.mbp10 import Layout, Mbp10CsvWriter, Mbp10Row, Mbp10Tracker, UpdateSide
from producers.readers import MboReader, OnError, ReaderStats, open_records
from topics.fixed import format_fixed

logger = logging.getLogger(__name__)

_DRAIN_EVERY = 8192  # records between take_trades() calls (the book keeps trades until taken)


@dataclass(slots=True)
class ReplayOptions:
    """Everything ``book replay`` can be told."""

    files: Sequence[Path]
    format: str | None = None
    on_error: OnError = "stop"
    crossed_policy: str = "keep"
    mbp10_csv: str | None = None  # output path, "-" for stdout
    every_record: bool = False
    layout: Layout = "by-side"
    update_side: UpdateSide = "order"
    top_only: bool = True  # no row for events that leave the top levels unchanged (Databento's MBP-10)
    progress: bool = False
    reader_opts: dict[str, Any] = field(default_factory=dict)  # LOBSTER ids, date, symbol; CSV price format


@dataclass(slots=True)
class ReplayResult:
    """What a replay did."""

    market: Market
    symbols: dict[int, str]
    reader_stats: list[tuple[Path, ReaderStats]]
    records: int = 0
    rows: int = 0
    trades: int = 0
    seconds: float = 0.0


class Progress:
    """A one-line progress indicator on stderr: records, rate, and % of the current file."""

    def __init__(self, out: IO[str], enabled: bool, interval: float = 1.0) -> None:
        self.out = out
        self.enabled = enabled
        self.interval = interval
        self.tty = out.isatty()
        self._start = self._last = time.monotonic()
        self._shown = False

    def update(self, records: int, reader: MboReader) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < (self.interval if self.tty else 5 * self.interval):
            return
        self._last = now
        done = reader.progress()
        pct = f"  {done * 100:5.1f}% of {reader.path.name}" if done is not None else ""
        rate = records / max(now - self._start, 1e-9)
        line = f"{records:,} records  {rate:,.0f} records/s{pct}"
        self.out.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        self.out.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown and self.tty:
            self.out.write("\n")
            self.out.flush()


def replay(opts: ReplayOptions, progress_out: IO[str] | None = None) -> ReplayResult:
    """Replay every file in order through one market of books; write MBP-10 rows if asked."""
    market = Market(opts.crossed_policy)
    result = ReplayResult(market=market, symbols={}, reader_stats=[])
    progress = Progress(progress_out or sys.stderr, opts.progress)
    trackers: dict[tuple[int, int], Mbp10Tracker] = {}
    start = time.monotonic()
    with _output(opts.mbp10_csv) as out:
        writer = Mbp10CsvWriter(out, opts.layout) if out is not None else None
        for path in opts.files:
            reader = open_records(path, opts.format, on_error=opts.on_error, **opts.reader_opts)
            _replay_file(reader, opts, market, trackers, writer, result, progress)
            result.reader_stats.append((path, reader.stats))
            result.symbols.update(reader.symbols)
    progress.close()
    result.rows = writer.rows if writer is not None else 0
    result.seconds = time.monotonic() - start
    return result


def _replay_file(
    reader: MboReader, opts: ReplayOptions, market: Market, trackers: dict[tuple[int, int], Mbp10Tracker],
    writer: Mbp10CsvWriter | None, result: ReplayResult, progress: Progress,
) -> None:
    for rec in reader:
        if writer is None:
            market.apply(rec)
        else:
            key = (rec.publisher_id, rec.instrument_id)
            tracker = trackers.get(key)
            if tracker is None:
                symbol = reader.symbols.get(rec.instrument_id, "")
                tracker = trackers[key] = _tracker(market.book_for(*key), symbol, opts)
            rows = tracker.feed(rec)
            if rows:
                writer.write(rows)
        result.records += 1
        if not result.records % _DRAIN_EVERY:
            result.trades += _drain(market)
            progress.update(result.records, reader)
    for tracker in trackers.values():
        _write(writer, tracker.flush())
    result.trades += _drain(market)


def _tracker(book: Book, symbol: str, opts: ReplayOptions) -> Mbp10Tracker:
    return Mbp10Tracker(
        book, symbol, every_record=opts.every_record, update_side=opts.update_side, top_only=opts.top_only,
    )


def _write(writer: Mbp10CsvWriter | None, rows: list[Mbp10Row]) -> None:
    if rows and writer is not None:
        writer.write(rows)


def _drain(market: Market) -> int:
    return sum(len(book.take_trades()) for book in market)


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
    elif path == "-":
        yield sys.stdout
    else:
        with open(path, "w", encoding="utf-8", newline="") as f:
            yield f


def summary_lines(result: ReplayResult) -> list[str]:
    """The text ``--summary`` prints: per book the BBO, resting orders per side and the book's statistics."""
    lines = [
        f"replayed {result.records:,} records in {result.seconds:.2f} s "
        f"({result.records / max(result.seconds, 1e-9):,.0f} records/s); {result.rows:,} MBP-10 rows; "
        f"{result.trades:,} trades",
    ]
    for path, stats in result.reader_stats:
        lines.append(f"file {path}: {_stats_text(stats.as_dict())}")
    for book in result.market:
        lines += _book_lines(book, result.symbols.get(book.instrument_id, ""))
    return lines


def _book_lines(book: Book, symbol: str) -> list[str]:
    bid, ask = book.bbo()
    sides = {side: book.levels(side, depth=1 << 30) for side in ("B", "A")}
    orders = {side: sum(lvl.count for lvl in levels) for side, levels in sides.items()}
    name = f"{symbol} " if symbol else ""
    stats = _struct(book)
    return [
        f"book {name}({book.publisher_id}/{book.instrument_id}):",
        f"  best bid {_level_text(bid)}   best ask {_level_text(ask)}",
        f"  resting orders: {book.order_count} (bids {orders['B']} at {len(sides['B'])} levels, "
        f"asks {orders['A']} at {len(sides['A'])} levels)",
        f"  book stats: {_stats_text(stats)}",
    ]


def _struct(book: Book) -> dict[str, object]:
    stats = book.stats
    return {f: getattr(stats, f) for f in stats.__struct_fields__ if getattr(stats, f)}


def _level_text(level: Any) -> str:
    if level is None:
        return "none"
    return f"{format_fixed(level.price)} x {level.size} ({level.count} orders)"


def _stats_text(stats: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in stats.items())
