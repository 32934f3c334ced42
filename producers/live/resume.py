"""Resuming a live feed after a dropped connection with no gap and no duplicate (pure logic; see docs/live.md).

After a drop the source resubscribes with ``start`` = the smallest, over instruments, ``ts_event`` of the last
record it published (Databento's intraday replay sends every record with ``ts_event >= start``, in feed order). The
replay therefore repeats records that were already published; :class:`ResumeFilter` drops exactly those.

Per instrument it remembers the ``ts_event`` of the last published record and the published records that carry
that same ``ts_event`` (their 56 bytes, with a count). On a new connection every instrument seen so far gets a
*mark*; until a record of that instrument passes the mark:

- ``ts_event`` before the mark: published already (a feed's ``ts_event`` never decreases within an instrument),
  dropped;
- ``ts_event`` equal to the mark: dropped if the same bytes were published at that ``ts_event`` (each published
  copy cancels one replayed copy), passed otherwise;
- ``ts_event`` after the mark: new; the mark is removed and everything after it passes.

Why not compare ``(ts_event, sequence)``: the records of one exchange event share both (in the ESH4 sample up to 36
records carry the same pair), so a drop in the middle of an event would lose the rest of the event. Comparing the
records themselves at the boundary timestamp is exact whatever the order in which the replay sends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Last:
    ts_event: int
    published: dict[bytes, int] = field(default_factory=dict)  # record bytes -> copies published at ts_event


@dataclass
class _Mark:
    ts_event: int
    left: dict[bytes, int]  # published copies not yet met again in the replay


class ResumeFilter:
    """Tracks what was published; after :meth:`resume`, drops what a replay repeats."""

    def __init__(self) -> None:
        self._last: dict[int, _Last] = {}
        self._marks: dict[int, _Mark] = {}
        self.duplicates = 0  # replayed records dropped
        self.regressions = 0  # records whose ts_event went back within an instrument (weakens the rule; logged)

    def resume_start(self) -> int | None:
        """``start`` for the resubscription: the earliest last-published ``ts_event`` (None: nothing published)."""
        return min((last.ts_event for last in self._last.values()), default=None)

    def resume(self) -> None:
        """A new connection begins: mark every instrument published so far."""
        self._marks = {inst: _Mark(last.ts_event, dict(last.published)) for inst, last in self._last.items()}

    @property
    def resuming(self) -> bool:
        """Some instrument has not passed its mark yet."""
        return bool(self._marks)

    def admit(self, instrument_id: int, ts_event: int, raw: bytes) -> bool:
        """True when the record is new (and note it as published), False for a replayed duplicate."""
        mark = self._marks.get(instrument_id)
        if mark is not None:
            if ts_event < mark.ts_event:
                self.duplicates += 1
                return False
            if ts_event == mark.ts_event:
                copies = mark.left.get(raw, 0)
                if copies:
                    mark.left[raw] = copies - 1
                    self.duplicates += 1
                    return False
            else:
                del self._marks[instrument_id]
        self._note(instrument_id, ts_event, raw)
        return True

    def _note(self, instrument_id: int, ts_event: int, raw: bytes) -> None:
        last = self._last.get(instrument_id)
        if last is None or last.ts_event != ts_event:
            if last is not None and ts_event < last.ts_event:
                self.regressions += 1
            self._last[instrument_id] = _Last(ts_event, {raw: 1})
            return
        last.published[raw] = last.published.get(raw, 0) + 1
