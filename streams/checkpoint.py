"""Checkpoints: what a worker writes to its RocksDB-backed table so that another worker can take a partition over.

Two kinds of entries, both msgpack:

- ``book/<publisher_id>/<instrument_id>`` -> :class:`BookCheckpoint`: the whole book (``Book.to_state``), what it
  published (:class:`~streams.publisher.PublishState`) and the Kafka offset of the last frame it reflects. Written
  only for books that changed since the previous checkpoint, once per commit interval, never per frame.
- ``partition/<n>`` -> :class:`PartitionMarker`: the partition has been processed by some worker. Its presence
  tells a new owner that outputs of frames it replays may have been published before (``duplicate=True``).

A :class:`CheckpointStore` reads the entries of assigned partitions and writes entries durably: ``write`` resolves
only when the entries are in the changelog topic (acknowledged by the broker). :class:`MemoryCheckpointStore` is
the in-memory twin used by unit tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import msgspec

from processors.book import BookState
from streams.errors import StateError
from streams.publisher import PublishState

CHECKPOINT_VERSION = 1
T = TypeVar("T")
BOOK_PREFIX = b"book/"
PARTITION_PREFIX = b"partition/"


class BookCheckpoint(msgspec.Struct, kw_only=True):
    """One book as of the frame at ``offset`` in ``partition``."""

    version: int = CHECKPOINT_VERSION
    partition: int
    offset: int  # Kafka offset of the last frame this checkpoint reflects; frames at or before it are skipped
    book: BookState
    publish: PublishState


class PartitionMarker(msgspec.Struct, kw_only=True):
    """A partition was processed (and its outputs possibly published) by ``worker``, up to ``offset``."""

    version: int = CHECKPOINT_VERSION
    partition: int
    offset: int  # last offset covered by the worker's last checkpoint of the partition (-1: claimed, none yet)
    worker: str
    ts_ns: int  # wall clock of the write


_encoder = msgspec.msgpack.Encoder()
_book_decoder = msgspec.msgpack.Decoder(BookCheckpoint)
_marker_decoder = msgspec.msgpack.Decoder(PartitionMarker)


def book_key(publisher_id: int, instrument_id: int) -> bytes:
    return b"%s%d/%d" % (BOOK_PREFIX, publisher_id, instrument_id)


def partition_key(partition: int) -> bytes:
    return b"%s%d" % (PARTITION_PREFIX, partition)


def encode(entry: BookCheckpoint | PartitionMarker) -> bytes:
    return _encoder.encode(entry)


def decode_book(data: bytes) -> BookCheckpoint:
    return _decode(_book_decoder, data)


def decode_marker(data: bytes) -> PartitionMarker:
    return _decode(_marker_decoder, data)


def _decode(decoder: msgspec.msgpack.Decoder[T], data: bytes) -> T:
    try:
        entry = decoder.decode(data)
    except msgspec.DecodeError as e:
        raise StateError(f"unreadable checkpoint entry ({len(data)} bytes): {e}") from e
    version = getattr(entry, "version", None)
    if version != CHECKPOINT_VERSION:
        raise StateError(f"checkpoint version {version}, this worker reads {CHECKPOINT_VERSION}")
    return entry


@dataclass
class PartitionRestore:
    """What the table holds for one partition."""

    marker: PartitionMarker | None = None
    books: list[BookCheckpoint] = field(default_factory=list)


def parse_entries(entries: Iterable[tuple[bytes, bytes]], partitions: Iterable[int]) -> dict[int, PartitionRestore]:
    """Group raw table entries by partition, keeping only ``partitions``."""
    wanted = {p: PartitionRestore() for p in partitions}
    for key, value in entries:
        if key.startswith(BOOK_PREFIX):
            book = decode_book(value)
            if book.partition in wanted:
                wanted[book.partition].books.append(book)
        elif key.startswith(PARTITION_PREFIX):
            marker = decode_marker(value)
            if marker.partition in wanted:
                wanted[marker.partition].marker = marker
    return wanted


class CheckpointStore(Protocol):
    """Where checkpoints live: read at assignment, written at commit boundaries."""

    def recovered(self, partitions: set[int]) -> set[int]:
        """Those of ``partitions`` whose every durable entry can be read now (a changelog-backed store
        answers only for partitions whose changelog has been read to its end in the current assignment)."""

    def load(self, partitions: set[int]) -> dict[int, PartitionRestore]:
        """Every entry of ``partitions`` (which must be assigned and recovered)."""

    def write(self, partition: int, entries: Mapping[bytes, bytes]) -> Awaitable[object]:
        """Store ``entries`` of ``partition``; the awaitable resolves once they are durable."""

    def note(self, partition: int, event: Any) -> None:
        """The latest event of ``partition`` (a Faust store writes in the context of one)."""

    def forget(self, partition: int) -> None:
        """``partition`` was revoked."""


class MemoryCheckpointStore:
    """The in-memory twin of the Faust table store, for unit tests: ``durable`` is what survives a crash.

    With ``hold=True`` writes stay pending (not durable) until :meth:`release` is called, to test what a crash
    between a checkpoint's write and its acknowledgement leaves behind.
    """

    def __init__(self, hold: bool = False) -> None:
        self.durable: dict[bytes, bytes] = {}
        self.hold = hold
        self.writes = 0
        self._pending: list[tuple[dict[bytes, bytes], asyncio.Future[None]]] = []

    def recovered(self, partitions: set[int]) -> set[int]:
        return set(partitions)

    def load(self, partitions: set[int]) -> dict[int, PartitionRestore]:
        return parse_entries(self.durable.items(), partitions)

    def write(self, partition: int, entries: Mapping[bytes, bytes]) -> Awaitable[object]:
        self.writes += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.hold:
            self._pending.append((dict(entries), future))
        else:
            self.durable.update(entries)
            future.set_result(None)
        return future

    def note(self, partition: int, event: Any) -> None:
        pass

    def forget(self, partition: int) -> None:
        pass

    def release(self) -> None:
        """Make every held write durable and resolve it."""
        for entries, future in self._pending:
            self.durable.update(entries)
            future.set_result(None)
        self._pending.clear()
