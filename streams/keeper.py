"""The books of one worker, by Kafka partition: frames in, outputs and checkpoints out. Pure: no Kafka, no clock.

The rules that make a kill -9 harmless live here (see docs/streams.md, "Checkpoints and recovery"):

- a frame at an offset at or before its book's checkpointed offset is skipped (it is re-delivered because the
  committed offset lags the checkpoint);
- a checkpoint covers every frame handled in its partition up to :attr:`CheckpointPlan.upto`; the caller acks
  (lets Faust commit) those frames only after the checkpoint is durable;
- outputs of frames below :attr:`PartitionState.dup_until` (the partition's end offset when it was assigned, if
  some worker processed the partition before) are marked ``duplicate=True``: a previous owner may have published
  them already.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter

from processors.book import Book
from processors.book.frames import decode_frame
from streams import checkpoint as cp
from streams.publisher import Output, OutputTopics, PublishState, TrackedBook
from topics.codec import encode
from topics.errors import DecodeError
from topics.records import DeadLetter, MboFrame

logger = logging.getLogger(__name__)

BookKey = tuple[int, int]  # (publisher_id, instrument_id)
STAGE = "book-agent"


@dataclass(frozen=True)
class KeeperConfig:
    topics: OutputTopics = field(default_factory=OutputTopics)
    crossed_policy: str = "keep"
    gap_threshold: int = 0
    mbp10_interval_s: float = 1.0
    worker: str = "worker"  # names the writer in partition markers


@dataclass
class PartitionState:
    """One assigned partition of the frames topic."""

    partition: int
    books: dict[BookKey, TrackedBook] = field(default_factory=dict)
    dirty: dict[BookKey, int] = field(default_factory=dict)  # changed since its last plan -> first offset since
    claimed: bool = False  # a partition marker is durable: some worker processed this partition
    dup_until: int = -1  # outputs of frames at offsets below this are marked duplicate
    last_offset: int = -1  # last offset handled (applied, skipped or dead-lettered)
    position: int = 0  # next offset to handle: the committed offset at assignment, then last_offset + 1
    checkpointed: int = -1  # last offset covered by a durable checkpoint
    skipped: int = 0  # frames skipped because a checkpoint covered them


@dataclass(frozen=True)
class CheckpointPlan:
    """Entries to write for one partition; once durable, frames up to ``upto`` may be committed."""

    partition: int
    upto: int
    entries: dict[bytes, bytes]
    state: PartitionState  # the partition state it was taken from (stale if the partition was revoked since)
    more: bool = False  # changed books were left for the next plan (its byte budget was spent)


@dataclass
class Tally:
    """Counters read by the metrics endpoint."""

    frames: int = 0
    records: int = 0
    skipped_frames: int = 0
    dead_letters: int = 0
    outputs: Counter[str] = field(default_factory=Counter)  # by topic
    anomalies: Counter[str] = field(default_factory=Counter)  # by kind


class Keeper:
    """Books of the partitions assigned to this worker."""

    def __init__(self, config: KeeperConfig) -> None:
        self.config = config
        self.partitions: dict[int, PartitionState] = {}
        self.owners: dict[BookKey, int] = {}
        self.tally = Tally()
        self.last_times: tuple[int, int] | None = None  # (ts_recv of its last record, ts_sent) of the last frame

    # ------------------------------------------------------------------ assignment

    def assign(self, partition: int, restore: cp.PartitionRestore, end_offset: int,
               committed: int = 0) -> PartitionState:
        """Take ``partition`` over from its checkpoints; ``end_offset`` is its end offset at assignment and
        ``committed`` the group's committed offset (where Kafka resumes delivery)."""
        self.revoke(partition)
        state = PartitionState(partition, position=committed)
        for entry in restore.books:
            book = Book.from_state(entry.book)
            key = (book.publisher_id, book.instrument_id)
            state.books[key] = self._track(book, entry.publish)
            self.owners[key] = partition
        if restore.marker is not None:  # its offset is not trusted: a crash may have left books older than it
            state.claimed = True
            state.dup_until = end_offset
        self.partitions[partition] = state
        logger.info("partition %d restored: %d books, %s", partition, len(state.books),
                    f"outputs below offset {end_offset} marked duplicate" if state.claimed else "never processed",
                    extra={"topic": self.config.topics.frames, "partition": partition})
        return state

    def revoke(self, partition: int) -> None:
        """Forget ``partition`` and its books (another worker restores them from the checkpoints)."""
        state = self.partitions.pop(partition, None)
        if state is not None:
            for key in state.books:
                self.owners.pop(key, None)

    def _track(self, book: Book, publish: PublishState | None = None) -> TrackedBook:
        return TrackedBook(book, self.config.topics, self.config.gap_threshold, publish, self.tally.anomalies)

    # ------------------------------------------------------------------ frames

    def handle(self, partition: int, offset: int, key: bytes | None, value: bytes | None, now_ns: int,
               now_s: float) -> list[Output]:
        """Process the frame at ``offset``: its outputs (dead letter included) in publishing order."""
        state = self.partitions[partition]
        state.last_offset = offset
        state.position = offset + 1
        self.last_times = None
        out: list[Output] = []
        if value is None:
            return self._dead(out, partition, offset, key, b"", "no value (null message)", now_ns)
        try:
            frame = decode_frame(value)
        except DecodeError as e:
            return self._dead(out, partition, offset, key, value, str(e), now_ns)
        book_id = (frame.publisher_id, frame.instrument_id)
        tracked = state.books.get(book_id) or self._new_book(state, book_id)
        if tracked is None:
            reason = (f"instrument ({frame.publisher_id}, {frame.instrument_id}) is kept in partition "
                      f"{self.owners[book_id]}: frames must be keyed by instrument_id")
            return self._dead(out, partition, offset, key, value, reason, now_ns)
        if offset <= tracked.state.offset:
            state.skipped += 1
            self.tally.skipped_frames += 1
            return out
        self._apply(state, tracked, frame, offset, value, out, now_ns, now_s)
        if out:
            self._count(out)
        return out

    def _new_book(self, state: PartitionState, book_id: BookKey) -> TrackedBook | None:
        if book_id in self.owners:  # the book lives in another partition
            return None
        tracked = self._track(Book(book_id[0], book_id[1], self.config.crossed_policy))
        state.books[book_id] = tracked
        self.owners[book_id] = state.partition
        return tracked

    def _apply(self, state: PartitionState, tracked: TrackedBook, frame: MboFrame, offset: int, value: bytes,
               out: list[Output], now_ns: int, now_s: float) -> None:
        duplicate = offset < state.dup_until
        try:
            tracked.apply_frame(frame, offset, duplicate, out)
        except Exception as e:  # a record the engine cannot take: keep going, keep the evidence
            logger.exception("book engine failed on frame", extra={
                "topic": self.config.topics.frames, "partition": state.partition, "offset": offset})
            tracked.state.offset = offset
            out.append(self._dead_letter(state.partition, offset, None, value, f"book engine error: {e!r}",
                                         now_ns))
        state.dirty.setdefault((frame.publisher_id, frame.instrument_id), offset)
        self.last_times = (frame.ts_recv[-1], frame.ts_sent)
        tracked.updated_ns = now_ns
        self.tally.frames += 1
        self.tally.records += len(frame.action)
        if tracked.mbp10_due(now_s, self.config.mbp10_interval_s):
            out.append(tracked.take_mbp10(now_s))

    def _dead(self, out: list[Output], partition: int, offset: int, key: bytes | None, value: bytes,
              reason: str, now_ns: int) -> list[Output]:
        logger.warning("dead letter: %s", reason, extra={
            "topic": self.config.topics.frames, "partition": partition, "offset": offset})
        out.append(self._dead_letter(partition, offset, key, value, reason, now_ns))
        self._count(out)
        return out

    def _dead_letter(self, partition: int, offset: int, key: bytes | None, value: bytes, reason: str,
                     now_ns: int) -> Output:
        self.tally.dead_letters += 1
        topic = self.config.topics.frames
        record = DeadLetter(topic=topic, partition=partition, offset=offset, key=key, value=value, reason=reason,
                            stage=STAGE, ts_recv=now_ns)
        return (self.config.topics.deadletter, topic.encode(), encode(record))

    def _count(self, out: list[Output]) -> None:
        self.tally.outputs.update(map(itemgetter(0), out))

    def due_mbp10(self, now_s: float, force: bool = False) -> list[Output]:
        """MBP-10 snapshots whose interval has passed (the timer's flush of books that went quiet); with
        ``force``, every changed book's, interval or not (at shutdown)."""
        interval = 0.0 if force else self.config.mbp10_interval_s
        out = [tracked.take_mbp10(now_s) for tracked in self.books() if tracked.mbp10_due(now_s, interval)]
        self._count(out)
        return out

    def books(self) -> Iterator[TrackedBook]:
        for state in self.partitions.values():
            yield from state.books.values()

    def book(self, instrument_id: int) -> TrackedBook | None:
        """The book of ``instrument_id`` (any publisher; the lowest publisher_id if several)."""
        found = [t for t in self.books() if t.book.instrument_id == instrument_id]
        return min(found, key=lambda t: t.book.publisher_id) if found else None

    # ------------------------------------------------------------------ checkpoints

    def plan_claim(self, partition: int, now_ns: int) -> CheckpointPlan | None:
        """The marker to make durable before the first output of a partition nobody processed before."""
        state = self.partitions[partition]
        if state.claimed:
            return None
        marker = cp.PartitionMarker(partition=partition, offset=-1, worker=self.config.worker, ts_ns=now_ns)
        return CheckpointPlan(partition, -1, {cp.partition_key(partition): cp.encode(marker)}, state)

    def plan_checkpoint(self, partition: int, now_ns: int, max_bytes: int | None = None) -> CheckpointPlan | None:
        """Entries for the books changed since their last plan, or None when nothing new was handled.

        With ``max_bytes``, books are taken oldest change first until their entries reach that size; the others
        wait for the next plan, and ``upto`` stops just before the oldest change left out, so that every frame up
        to it is in a checkpoint (this one or an earlier one) whichever book it changed."""
        state = self.partitions.get(partition)
        if state is None or (not state.dirty and state.last_offset <= state.checkpointed):
            return None
        entries: dict[bytes, bytes] = {}
        size = 0
        for book_id, _ in sorted(state.dirty.items(), key=itemgetter(1)):
            if max_bytes is not None and entries and size >= max_bytes:
                break
            tracked = state.books[book_id]
            entry = cp.BookCheckpoint(partition=partition, offset=tracked.state.offset,
                                      book=tracked.book.checkpoint_state(), publish=tracked.state)
            entries[cp.book_key(*book_id)] = value = cp.encode(entry)
            size += len(value)
            del state.dirty[book_id]
        oldest = self.oldest_change(partition)
        upto = state.last_offset if oldest is None else oldest - 1
        marker = cp.PartitionMarker(partition=partition, offset=upto, worker=self.config.worker, ts_ns=now_ns)
        entries[cp.partition_key(partition)] = cp.encode(marker)
        return CheckpointPlan(partition, upto, entries, state, more=bool(state.dirty))

    def oldest_change(self, partition: int) -> int | None:
        """Offset of the oldest frame whose change to a book no plan has taken yet (None: none)."""
        state = self.partitions.get(partition)
        return min(state.dirty.values()) if state is not None and state.dirty else None

    def completed(self, plan: CheckpointPlan) -> bool:
        """Record that ``plan`` is durable; False when its partition was revoked meanwhile (do not ack)."""
        state = self.partitions.get(plan.partition)
        if state is not plan.state:
            return False
        state.claimed = True
        state.checkpointed = max(state.checkpointed, plan.upto)
        return True
