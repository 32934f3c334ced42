"""What every reader shares: statistics, the malformed-record policy, the column batch and the reader interface."""

from __future__ import annotations

import abc
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from producers.readers.errors import MalformedRecordError
from topics.records import MboFrame, MboRecord

logger = logging.getLogger(__name__)

OnError = Literal["stop", "skip"]
ON_ERROR_CHOICES: tuple[OnError, ...] = ("stop", "skip")
DEFAULT_BATCH = 65_536  # records per iter_columns chunk
_LOG_INTERVAL_S = 5.0  # at most one "skipped" warning per reason per interval, with the count since the last one


@dataclass(slots=True)
class ReaderStats:
    """Counters of one pass over a file.

    ``records`` MBO records yielded; ``skipped`` malformed rows dropped under ``on_error="skip"``, ``by_reason``
    the same by reason category; ``ignored`` well-formed input that is not an MBO record (other DBN record types,
    CSV rows of another rtype, LOBSTER halts), by kind.
    """

    records: int = 0
    skipped: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "records": self.records, "skipped": self.skipped,
            "by_reason": dict(self.by_reason), "ignored": dict(self.ignored),
        }


def check_on_error(on_error: str) -> OnError:
    """``on_error`` itself, or ``ValueError`` when it is not ``"stop"`` or ``"skip"``."""
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, not {on_error!r}")
    return on_error


class Problems:
    """Applies the ``on_error`` policy to malformed records of one file.

    ``report`` raises :class:`MalformedRecordError` (or the given subclass) with ``"stop"``; with ``"skip"`` it
    counts the record under ``category`` and logs a warning, at most one per category every few seconds.
    """

    def __init__(self, path: Path, on_error: OnError, stats: ReaderStats) -> None:
        self.path = path
        self.on_error = check_on_error(on_error)
        self.stats = stats
        self._last_log: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    def report(
        self, location: str, reason: str, category: str,
        error: type[MalformedRecordError] = MalformedRecordError,
    ) -> None:
        """One malformed record at ``location`` (``"row 12"``, ``"byte offset 4096"``)."""
        if self.on_error == "stop":
            raise error(self.path, location, reason)
        self.stats.skipped += 1
        self.stats.by_reason[category] += 1
        self._unlogged[category] += 1
        now = time.monotonic()
        if now - self._last_log.get(category, -_LOG_INTERVAL_S) >= _LOG_INTERVAL_S:
            logger.warning(
                "%s: %s: %s (skipped; %d %r record(s) skipped since the last warning)",
                self.path, location, reason, self._unlogged[category], category,
            )
            self._last_log[category] = now
            self._unlogged[category] = 0


@dataclass(slots=True)
class MboColumns:
    """Consecutive MBO records of one (publisher_id, instrument_id), column by column (see :class:`MboFrame`)."""

    publisher_id: int
    instrument_id: int
    symbol: str | None
    ts_recv: list[int]
    ts_event: list[int]
    action: str  # one character per record
    side: str  # one character per record
    price: list[int]
    size: list[int]
    channel_id: list[int]
    order_id: list[int]
    flags: list[int]
    ts_in_delta: list[int]
    sequence: list[int]

    def __len__(self) -> int:
        return len(self.action)

    def to_frame(self, ts_sent: int = 0) -> MboFrame:
        """The same columns as a wire frame."""
        return MboFrame(
            publisher_id=self.publisher_id, instrument_id=self.instrument_id, symbol=self.symbol,
            ts_recv=self.ts_recv, ts_event=self.ts_event, action=self.action, side=self.side, price=self.price,
            size=self.size, channel_id=self.channel_id, order_id=self.order_id, flags=self.flags,
            ts_in_delta=self.ts_in_delta, sequence=self.sequence, ts_sent=ts_sent,
        )

    def records(self) -> Iterator[MboRecord]:
        """The rows as records, in order."""
        return self.to_frame().records()


def columns_from_records(records: Iterable[MboRecord], symbols: dict[int, str]) -> list[MboColumns]:
    """Records grouped by (publisher_id, instrument_id) in order of first appearance, each group in file order."""
    groups: dict[tuple[int, int], list[MboRecord]] = {}
    for rec in records:
        groups.setdefault((rec.publisher_id, rec.instrument_id), []).append(rec)
    out = []
    for (pub, inst), rows in groups.items():
        out.append(MboColumns(
            publisher_id=pub, instrument_id=inst, symbol=symbols.get(inst),
            ts_recv=[r.ts_recv for r in rows], ts_event=[r.ts_event for r in rows],
            action="".join(r.action for r in rows), side="".join(r.side for r in rows),
            price=[r.price for r in rows], size=[r.size for r in rows], channel_id=[r.channel_id for r in rows],
            order_id=[r.order_id for r in rows], flags=[r.flags for r in rows],
            ts_in_delta=[r.ts_in_delta for r in rows], sequence=[r.sequence for r in rows],
        ))
    return out


class MboReader(abc.ABC):
    """A file of MBO records, read in file order. Iterating starts a new pass and resets :attr:`stats`.

    ``symbols`` maps instrument_id to the raw symbol when the file says it (DBN metadata or symbol mappings, the
    CSV ``symbol`` column, the LOBSTER file name); it fills as the file is read.
    """

    format: str = ""

    def __init__(self, path: str | Path, *, on_error: OnError = "stop") -> None:
        self.path = Path(path)
        self.on_error: OnError = check_on_error(on_error)
        self.stats = ReaderStats()
        self.symbols: dict[int, str] = {}
        self._size = 0
        self._done = 0

    def __iter__(self) -> Iterator[MboRecord]:
        return self.records()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        return None

    def start_pass(self) -> Problems:
        """For implementations: fresh statistics for a new pass, and its error policy."""
        self.stats = ReaderStats()
        self._size = self.path.stat().st_size
        self._done = 0
        return Problems(self.path, self.on_error, self.stats)

    def mark_progress(self, done_bytes: int) -> None:
        """For implementations: bytes of the file consumed so far (compressed bytes for zstd)."""
        self._done = done_bytes

    @abc.abstractmethod
    def records(self) -> Iterator[MboRecord]:
        """Every MBO record of the file, in file order."""

    def iter_columns(self, max_records: int = DEFAULT_BATCH) -> Iterator[MboColumns]:
        """The file in chunks of at most ``max_records`` records, each chunk split by (publisher_id, instrument_id).

        Order is kept within an instrument; between instruments of one chunk it is not (they go to different
        Kafka partitions anyway). This generic version builds records first; fast readers override it.
        """
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        chunk: list[MboRecord] = []
        for rec in self.records():
            chunk.append(rec)
            if len(chunk) >= max_records:
                yield from columns_from_records(chunk, self.symbols)
                chunk = []
        if chunk:
            yield from columns_from_records(chunk, self.symbols)

    def progress(self) -> float | None:
        """Fraction of the file's bytes consumed so far in the current pass (``None`` before the first pass)."""
        if not self._size:
            return None
        return min(1.0, self._done / self._size)
