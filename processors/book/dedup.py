"""Idempotency: deciding whether a record was already applied to a book.

Several distinct records share one sequence number (the trade, fills and cancels of one XNAS execution; every
record of a CME packet), and some of them are byte-for-byte identical (two fills of one resting order by two
aggressors, same size, same timestamps). A sequence number alone therefore does not identify a record, and neither
does its content. Per channel the book keeps:

* ``seq``: the highest sequence applied; a record with a lower sequence is a duplicate, and it means a replay is
  running, so the replay cursor goes back to the start of the current group;
* ``group``: the fingerprints of the records applied at ``seq``, in order, and a replay ``cursor`` into it. A
  record at ``seq`` that equals ``group[cursor]`` is the replay of that record. Otherwise, when it equals the
  first record of an event in the group (the group's first record, or one right after an F_LAST record), a replay
  restarts there (replays resume at frame boundaries, and frames end at F_LAST). Anything else is new;
* sequence 0 means unsequenced: only an exact repeat of the channel's previous record is a duplicate.

Clears (R) and snapshots (F_SNAPSHOT) restart sequences, so they are judged by time instead (see the book), and
any other record received before the last clear or snapshot start (``ts_recv < last_clear_ts``) is stale: the
clear superseded it, so it is skipped as a duplicate too (this catches replays that span a clear).
"""

from __future__ import annotations

from typing import Final

from processors.book.state import ChannelState, DedupState, Fingerprint
from topics.records import F_LAST

_FLAGS: Final = 5  # index of flags in a fingerprint: (action, side, price, size, order_id, flags, ts_recv, ts_event)


class ChannelDedup:
    """Replay detection for one channel (see the module docstring)."""

    __slots__ = ("cursor", "group", "last_fp", "seq", "starts")

    def __init__(self) -> None:
        self.seq = -1
        self.group: list[Fingerprint] = []
        self.starts: dict[Fingerprint, int] | None = None  # event starts after the first record -> position
        self.cursor = 0
        self.last_fp: Fingerprint | None = None

    def is_duplicate(self, sequence: int, fp: Fingerprint) -> bool:
        """True when the record was already applied; otherwise it is recorded as applied."""
        if sequence > self.seq:
            if sequence == 0:  # seq is -1 (nothing yet): unsequenced records never open a group
                return self._unsequenced(fp)
            self.seq = sequence
            self.group = [fp]
            self.starts = None
            self.cursor = 1
            self.last_fp = fp
            return False
        if sequence == 0:
            return self._unsequenced(fp)
        if sequence < self.seq:
            self.cursor = 0
            return True
        return self._same_sequence(fp)

    def _unsequenced(self, fp: Fingerprint) -> bool:
        if fp == self.last_fp:
            return True
        self.last_fp = fp
        return False

    def _same_sequence(self, fp: Fingerprint) -> bool:
        group = self.group
        cursor = self.cursor
        if cursor < len(group) and group[cursor] == fp:
            self.cursor = cursor + 1
            return True
        start = self._event_start(fp)
        if start is not None:
            self.cursor = start + 1
            return True
        if group[-1][_FLAGS] & F_LAST:
            if self.starts is None:
                self.starts = {}
            self.starts.setdefault(fp, len(group))
        group.append(fp)
        self.cursor = len(group)
        self.last_fp = fp
        return False

    def _event_start(self, fp: Fingerprint) -> int | None:
        if self.group[0] == fp:
            return 0
        if self.starts:
            return self.starts.get(fp)
        return None

    def to_state(self, channel_id: int) -> ChannelState:
        return ChannelState(
            channel_id=channel_id, seq=self.seq, group=list(self.group), cursor=self.cursor, last_fp=self.last_fp
        )

    @classmethod
    def from_state(cls, state: ChannelState) -> ChannelDedup:
        ch = cls()
        ch.seq = state.seq
        ch.group = [tuple(fp) for fp in state.group]  # type: ignore[misc]
        ch.cursor = state.cursor
        ch.last_fp = tuple(state.last_fp) if state.last_fp is not None else None  # type: ignore[assignment]
        for pos in range(1, len(ch.group)):
            if ch.group[pos - 1][_FLAGS] & F_LAST:
                if ch.starts is None:
                    ch.starts = {}
                ch.starts.setdefault(ch.group[pos], pos)
        return ch


class Deduper:
    """Per-book idempotency state: one :class:`ChannelDedup` per channel, plus the clear/snapshot clock.

    ``ts_high`` is the highest ``ts_recv`` applied; an R or a snapshot record older than it is a replay.
    ``last_clear_ts`` is the ``ts_recv`` of the last R applied or snapshot begun; ``snapshot_open`` says a snapshot
    is being received (set by an R or a first snapshot record, reset by a live record or an F_LAST snapshot record).
    """

    __slots__ = ("after_clear", "channels", "last_clear_ts", "snapshot_open", "ts_high")

    def __init__(self) -> None:
        self.channels: dict[int, ChannelDedup] = {}
        self.ts_high = -1
        self.last_clear_ts = -1
        self.snapshot_open = False
        self.after_clear = False  # an R was the last record applied: a snapshot may follow

    def channel(self, channel_id: int) -> ChannelDedup:
        ch = self.channels.get(channel_id)
        if ch is None:
            ch = self.channels[channel_id] = ChannelDedup()
        return ch

    def clear_is_duplicate(self, ts_recv: int) -> bool:
        """An R older than what was applied, or the R already applied at the latest time, is a replay."""
        return ts_recv < self.ts_high or (ts_recv == self.ts_high and ts_recv == self.last_clear_ts)

    def restart_sequences(self) -> None:
        """After a clear or the start of a snapshot, any sequence may follow."""
        self.channels.clear()

    def to_state(self) -> DedupState:
        return DedupState(
            ts_high=self.ts_high, last_clear_ts=self.last_clear_ts, snapshot_open=self.snapshot_open,
            after_clear=self.after_clear, channels=[ch.to_state(cid) for cid, ch in sorted(self.channels.items())],
        )

    @classmethod
    def from_state(cls, state: DedupState) -> Deduper:
        d = cls()
        d.ts_high = state.ts_high
        d.last_clear_ts = state.last_clear_ts
        d.snapshot_open = state.snapshot_open
        d.after_clear = state.after_clear
        d.channels = {cs.channel_id: ChannelDedup.from_state(cs) for cs in state.channels}
        return d
