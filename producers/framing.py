"""Framing: pack consecutive MBO records of one instrument into :class:`~topics.records.MboFrame` messages.

Pure logic, no I/O and no clock: the caller passes ``now`` (seconds, any monotonic origin) to every call.

Rules (see docs/producers.md):

- records are kept in one pending buffer per (publisher_id, instrument_id), in arrival order;
- a frame never splits an F_LAST event: a frame ends just after a record flagged F_LAST, except the last frame
  of :meth:`Framer.flush` (end of input) and the rare event longer than ``event_limit`` records (logged);
- a frame holds at most ``max_records`` records, unless its one event is longer: that event is sent whole;
- complete events wait at most ``linger_s`` (since the oldest pending record arrived) before they are sent,
  so a busy feed yields full frames and a quiet one yields one event per frame.

Records come in :class:`Block` s: a run of records of one instrument that can hand out any column slice. Framing
slices blocks lazily, so a block backed by raw DBN bytes turns into Python lists only once, frame by frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from topics.records import F_LAST, MboFrame, MboRecord

logger = logging.getLogger(__name__)

INT_COLUMNS = ("ts_recv", "ts_event", "price", "size", "channel_id", "order_id", "flags", "ts_in_delta", "sequence")
TEXT_COLUMNS = ("action", "side")
DEFAULT_EVENT_LIMIT = 50_000  # records; about 5 MB of JSON, under the topic's 8 MB message limit

# byte -> 1 where the F_LAST bit is set: ``bytes(flags).translate(LAST_TABLE)`` is the block's ``last`` mask
LAST_TABLE = bytes(1 if i & F_LAST else 0 for i in range(256))


class Block(Protocol):
    """Records of one (publisher_id, instrument_id), column by column."""

    publisher_id: int
    instrument_id: int
    symbol: str | None

    @property
    def last(self) -> bytes:
        """One byte per record, 1 where the record is flagged F_LAST."""

    def __len__(self) -> int: ...

    def ints(self, name: str, start: int, stop: int) -> list[int]:
        """The integer column ``name`` (one of :data:`INT_COLUMNS`) for records ``start:stop``."""

    def text(self, name: str, start: int, stop: int) -> str:
        """``action`` or ``side`` for records ``start:stop``, one character per record."""


@dataclass
class ColumnBlock:
    """A :class:`Block` held as Python lists (from records, a CSV reader, or the simulator)."""

    publisher_id: int
    instrument_id: int
    columns: dict[str, list[int]]
    action: str
    side: str
    symbol: str | None = None
    last: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not self.last:
            self.last = bytes(self.columns["flags"]).translate(LAST_TABLE)

    def __len__(self) -> int:
        return len(self.action)

    def ints(self, name: str, start: int, stop: int) -> list[int]:
        return self.columns[name][start:stop]

    def text(self, name: str, start: int, stop: int) -> str:
        return (self.action if name == "action" else self.side)[start:stop]

    @classmethod
    def from_records(cls, records: Iterable[MboRecord], symbols: dict[int, str] | None = None) -> list[ColumnBlock]:
        """One block per (publisher_id, instrument_id) met in ``records``, order kept within each."""
        groups: dict[tuple[int, int], list[MboRecord]] = {}
        for r in records:
            key = (r.publisher_id, r.instrument_id)
            rows = groups.get(key)
            if rows is None:
                rows = groups[key] = []
            rows.append(r)
        return [cls._of_rows(pub, inst, rows, (symbols or {}).get(inst)) for (pub, inst), rows in groups.items()]

    @classmethod
    def _of_rows(cls, pub: int, inst: int, rows: Sequence[MboRecord], symbol: str | None) -> ColumnBlock:
        columns = {name: [getattr(r, name) for r in rows] for name in INT_COLUMNS}
        return cls(
            pub, inst, columns, "".join(r.action for r in rows), "".join(r.side for r in rows), symbol,
        )


@dataclass
class _Segment:
    block: Block
    start: int
    stop: int
    arrived: float


@dataclass
class _Pending:
    """The records of one instrument waiting to be framed."""

    segments: list[_Segment] = field(default_factory=list)
    size: int = 0  # records pending
    complete: int = 0  # records up to and including the last F_LAST pending

    @property
    def since(self) -> float:
        return self.segments[0].arrived


class Framer:
    """Turns blocks of records into frames; see the module docstring for the rules."""

    def __init__(
        self, max_records: int = 250, linger_s: float = 0.005, event_limit: int = DEFAULT_EVENT_LIMIT,
    ) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be at least 1, got {max_records}")
        if linger_s < 0:
            raise ValueError(f"linger_s must not be negative, got {linger_s}")
        self.max_records = max_records
        self.linger_s = linger_s
        self.event_limit = max(event_limit, max_records)
        self._pending: dict[tuple[int, int], _Pending] = {}
        self._symbols: dict[tuple[int, int], str | None] = {}
        self._deadline: float | None = None  # earliest time a complete event's linger runs out (a lower bound)
        self.split_events = 0  # events cut because they exceeded event_limit
        self._pending_total = 0

    @property
    def pending_records(self) -> int:
        """Records waiting to be framed (a counter: safe to read from another thread)."""
        return self._pending_total

    def next_deadline(self) -> float | None:
        """When :meth:`poll` may next have frames to send (None: nothing waiting on linger)."""
        return self._deadline

    def add(self, block: Block, now: float, ts_sent: int = 0) -> list[MboFrame]:
        """Take ``block``'s records; returns the frames that are due now."""
        n = len(block)
        if n == 0:
            return []
        key = (block.publisher_id, block.instrument_id)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
        if block.symbol is not None:
            self._symbols[key] = block.symbol
        j = block.last.rfind(1)
        if j >= 0:
            pending.complete = pending.size + j + 1
        pending.segments.append(_Segment(block, 0, n, now))
        pending.size += n
        self._pending_total += n
        out: list[MboFrame] = []
        self._drain(key, pending, now, ts_sent, out)
        return out

    def add_records(self, records: Iterable[MboRecord], now: float, ts_sent: int = 0) -> list[MboFrame]:
        """Convenience: :meth:`add` each instrument's records of ``records``."""
        out: list[MboFrame] = []
        for block in ColumnBlock.from_records(records):
            out.extend(self.add(block, now, ts_sent))
        return out

    def poll(self, now: float, ts_sent: int = 0) -> list[MboFrame]:
        """Frames of complete events whose linger has run out by ``now``."""
        if self._deadline is None or now < self._deadline:
            return []
        out: list[MboFrame] = []
        self._deadline = None
        for key, pending in list(self._pending.items()):
            self._drain(key, pending, now, ts_sent, out)
        return out

    def flush(self, ts_sent: int = 0) -> list[MboFrame]:
        """Everything pending, including an unfinished event at the end of the input."""
        out: list[MboFrame] = []
        for key, pending in list(self._pending.items()):
            while pending.size:
                count = self._cut_point(pending, self.max_records) if pending.complete else pending.size
                out.append(self._take(key, pending, count, ts_sent))
        self._pending.clear()
        self._deadline = None
        return out

    def _drain(self, key: tuple[int, int], pending: _Pending, now: float, ts_sent: int, out: list[MboFrame]) -> None:
        """Send what is due for one instrument, then note its next linger deadline."""
        while pending.complete >= self.max_records:
            out.append(self._take(key, pending, self._cut_point(pending, self.max_records), ts_sent))
        if pending.complete and now - pending.since >= self.linger_s:
            while pending.complete:
                out.append(self._take(key, pending, self._cut_point(pending, self.max_records), ts_sent))
        if pending.size - pending.complete > self.event_limit:
            self.split_events += 1
            logger.warning(
                "event of instrument %d exceeds %d records without F_LAST: sending it in parts",
                key[1], self.event_limit, extra={"instrument_id": key[1], "publisher_id": key[0]},
            )
            out.append(self._take(key, pending, pending.size, ts_sent))
        if not pending.size:
            del self._pending[key]
        elif pending.complete:
            due = pending.since + self.linger_s
            if self._deadline is None or due < self._deadline:
                self._deadline = due

    @staticmethod
    def _cut_point(pending: _Pending, limit: int) -> int:
        """Records in the next frame: up to the last F_LAST within ``limit`` records, else the first F_LAST."""
        best = 0
        offset = 0
        for seg in pending.segments:
            if offset >= limit:
                break
            j = seg.block.last.rfind(1, seg.start, min(seg.stop, seg.start + limit - offset))
            if j >= 0:
                best = offset + j - seg.start + 1
            offset += seg.stop - seg.start
        if best:
            return best
        offset = 0
        for seg in pending.segments:
            j = seg.block.last.find(1, seg.start, seg.stop)
            if j >= 0:
                return offset + j - seg.start + 1
            offset += seg.stop - seg.start
        return pending.size

    def _take(self, key: tuple[int, int], pending: _Pending, count: int, ts_sent: int) -> MboFrame:
        """Remove the first ``count`` pending records of one instrument and return them as a frame."""
        parts: list[tuple[Block, int, int]] = []
        need = count
        while need:
            seg = pending.segments[0]
            stop = min(seg.stop, seg.start + need)
            parts.append((seg.block, seg.start, stop))
            need -= stop - seg.start
            if stop == seg.stop:
                pending.segments.pop(0)
            else:
                seg.start = stop
        pending.size -= count
        self._pending_total -= count
        pending.complete = max(0, pending.complete - count)
        return _frame(key, parts, self._symbols.get(key), ts_sent)


def _frame(key: tuple[int, int], parts: list[tuple[Block, int, int]], symbol: str | None, ts_sent: int) -> MboFrame:
    if len(parts) == 1:
        block, start, stop = parts[0]
        ints = {name: block.ints(name, start, stop) for name in INT_COLUMNS}
        texts = {name: block.text(name, start, stop) for name in TEXT_COLUMNS}
    else:
        ints = {name: [] for name in INT_COLUMNS}
        for block, start, stop in parts:
            for name, values in ints.items():
                values += block.ints(name, start, stop)
        texts = {name: "".join(b.text(name, s, e) for b, s, e in parts) for name in TEXT_COLUMNS}
    return MboFrame(
        publisher_id=key[0], instrument_id=key[1], symbol=symbol, ts_sent=ts_sent,
        action=texts["action"], side=texts["side"], **ints,
    )


def frame_key(frame: MboFrame) -> bytes:
    """The Kafka key of a frame: its instrument_id as decimal text, so one instrument lives in one partition."""
    return str(frame.instrument_id).encode()


_ACTION_BYTES = b"ACMRTFN"
_SIDE_BYTES = b"ABN"


def frame_problem(frame: MboFrame) -> str | None:
    """Why ``frame`` must not be published, or None; a fast pre-check, :meth:`MboFrame.column_error` decides."""
    n = len(frame.action)
    if (
        n
        and len(frame.side) == n
        and all(len(getattr(frame, name)) == n for name in INT_COLUMNS)
        and frame.action.isascii()
        and frame.side.isascii()
        and not frame.action.encode().translate(None, _ACTION_BYTES)
        and not frame.side.encode().translate(None, _SIDE_BYTES)
    ):
        return None
    return frame.column_error() or "inconsistent frame"
