"""Records of the hot topics handed to the agent as one Faust event per partition and fetch.

Faust delivers every Kafka record as an event of its own: the fetch loop (``Consumer._drain_messages``) awaits
``wait_first(callback(message), suspend_flow.wait())`` per record, two tasks and a wait, then the conductor, the
channel queue and the stream; about 100 µs of Python per record on this machine (``../shared/DESIGN.md``), which
caps a worker at a few thousand single-tick messages a second whatever the agent does with them.

For the topics an app names in ``batch_topics``, :class:`BatchingConsumer` gathers the records of one partition
from one fetch (at most ``app.batch_max``, in offset order) into a :class:`BatchMessage`, and hands that to Faust
as one message. The agent reads ``messages``: aiokafka's own records (``topic``, ``partition``, ``offset``,
``key``, ``value``, ``timestamp``), not a Faust message each, whose construction and per-record admission awaits
were a sixth of the features worker's cost per tick. Everything else Faust does per message still holds per batch:
flow control and the generation check (a batch of an older generation is skipped by the stream), tracking, and
acks: acking the batch acks each of its records with Faust's own ``Consumer.ack``, so the committed offset moves
exactly as if the records had been acked one by one. Records of other topics (the tables' changelogs, above all)
go through Faust's path unchanged, one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, MutableMapping
from functools import partial
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.types import TP
from faust.types.tuples import ConsumerMessage, ack_lock
from mode.utils.futures import notify

DEFAULT_BATCH_MAX = 500  # records per event at most: bounds the time the agent holds the loop for one event
YIELD_EVERY = 100  # single-record deliveries between two yields to the loop, as Faust does


class BatchMessage(ConsumerMessage):
    """Consecutive records of one partition as one message; its own fields are those of ``last``, the Faust
    message of the last record. ``messages`` are the records (any objects with ``topic``, ``offset``, ``key`` and
    ``value``: aiokafka's, from the fetch loop)."""

    __slots__ = ("messages",)

    def __init__(self, last: ConsumerMessage, messages: list[Any]) -> None:
        super().__init__(last.topic, last.partition, last.offset, last.timestamp, last.timestamp_type,
                         last.headers, last.key, last.value, last.checksum, last.serialized_key_size,
                         last.serialized_value_size, last.tp, time_in=last.time_in,
                         generation_id=last.generation_id)
        self.messages = messages

    def on_final_ack(self, consumer: Any) -> bool:
        return bool(consumer.ack_batch(self))


def records_of(message: Any) -> list[Any]:
    """The Kafka records a Faust message stands for: a batch's records, or the message itself."""
    return message.messages if isinstance(message, BatchMessage) else [message]


def chunks(records: list[Any], most: int, to_message: Callable[[Any], ConsumerMessage]) -> Iterator[ConsumerMessage]:
    """One message per run of at most ``most`` records: a :class:`BatchMessage`, or for a lone record its Faust
    message (``to_message``)."""
    for start in range(0, len(records), most):
        part = records[start:start + most]
        yield to_message(part[0]) if len(part) == 1 else BatchMessage(to_message(part[-1]), part)


class BatchingConsumer:
    """Mixin for Faust's ``Consumer``: the fetch loop batches the records of ``app.batch_topics``."""

    app: Any
    callback: Any
    diag: Any
    suspend_flow: asyncio.Event
    _read_offset: MutableMapping[TP, int | None]
    _unacked_messages: Any
    _n_acked: int
    _commit_every: int | None

    def ack_batch(self, batch: BatchMessage) -> bool:
        """Ack every record of ``batch`` with the bookkeeping of Faust's ``Consumer.ack`` (under its lock: each
        offset at or past the committed one, once, into the partition's acked offsets), in one pass."""
        this = cast(Any, self)
        with ack_lock:
            batch.acked = True
            self._unacked_messages.discard(batch)
            if not self.app.topics.acks_enabled_for(batch.topic):
                return False
            tp = batch.tp
            committed = this._committed_offset[tp]
            index, acked = this._acked_index[tp], this._acked[tp]
            added = 0
            for record in batch.messages:
                offset = record.offset
                if (committed is None or offset >= committed) and offset not in index:
                    index.add(offset)
                    acked.append(offset)
                    added += 1
            self._n_acked += added
            notify(this._waiting_for_ack)
            return added > 0

    async def _drain_messages(self, fetcher: Any) -> None:
        this = cast(Any, self)
        batch_topics = frozenset(getattr(self.app, "batch_topics", ()))
        most = int(getattr(self.app, "batch_max", DEFAULT_BATCH_MAX))
        if not batch_topics or most <= 1:
            await cast(Any, super())._drain_messages(fetcher)
            return
        stopped, fetcher_stopped = this._stopped.is_set, fetcher._stopped.is_set
        try:
            while not (stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                await this.sleep(0)
                if not this.should_stop:
                    await self._drain_one_fetch(batch_topics, most)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except this.consumer_stopped_errors:
            if this.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if this.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _drain_one_fetch(self, batch_topics: frozenset[str], most: int) -> None:
        """Deliver the records of one fetch: one batch per partition of the batched topics, the other topics'
        records one by one. Faust's ``getmany`` does the same bookkeeping per record (the partition's end offset
        for its monitor, the flow and generation checks); here it is done per partition."""
        this = cast(Any, self)
        records, active = await this._wait_next_records(1.0)
        if records is None or this.should_stop:
            return
        if not this.flow_active:  # the flow stopped while the fetch was waiting: back to the committed offsets
            await this.perform_seek()
            return
        to_message, track_end = this._to_message, self.app.monitor.track_tp_end_offset
        for tp, fetched in records.items():
            if active is not None and tp not in active and tp not in this._buffered_partitions:
                continue  # paused meanwhile
            if tp.topic in batch_topics:
                if not await self._deliver_batches(tp, fetched, most):
                    return
                continue
            track_end(tp, this.highwater(tp))
            admitted = await self._admit(tp, fetched)
            for count, record in enumerate(admitted, 1):
                if not await self._deliver(to_message(tp, record)):
                    return
                if count % YIELD_EVERY == 0:
                    await asyncio.sleep(0)

    async def _deliver_batches(self, tp: TP, fetched: list[Any], most: int,
                               current: Callable[[], bool] | None = None) -> bool:
        """Deliver a partition's fetched records in batches of at most ``most``, after Faust's admission rules;
        False when delivery stopped: the flow stopped (a rebalance), or ``current`` said the records went stale."""
        this = cast(Any, self)
        self.app.monitor.track_tp_end_offset(tp, this.highwater(tp))
        admitted = await self._admit(tp, fetched)
        for message in chunks(admitted, most, partial(this._to_message, tp)):
            if (current is not None and not current()) or not await self._deliver(message):
                return False
        return True

    async def _admit(self, tp: TP, fetched: list[Any]) -> list[Any]:
        """The fetched records Faust's rules let through, in order: a record older than what was read already (a
        seek went back) is dropped; offsets skipped since the last read (transaction markers, compaction) are a
        gap Faust may commit over."""
        last = self._read_offset[tp]
        if last is not None and fetched and fetched[0].offset < last:
            fetched = [r for r in fetched if r.offset >= last]
        if not fetched:
            return fetched
        first, final = fetched[0].offset, fetched[-1].offset
        skipped = final - first + 1 > len(fetched) or (last is not None and first - last > 1)
        if skipped and self.app.topics.acks_enabled_for(tp.topic):
            for record in fetched:  # some offset was skipped: find the gaps (rare)
                offset = record.offset
                if last and offset - last > 1:
                    await cast(Any, self)._add_gap(tp, last + 1, offset)
                last = offset
        self._read_offset[tp] = final
        return fetched

    async def _deliver(self, message: ConsumerMessage) -> bool:
        """Hand ``message`` to Faust's conductor; False when the flow stopped (a rebalance): deliver no more."""
        this = cast(Any, self)
        if not this.flow_active or message.generation_id != self.app.consumer_generation_id:
            return False
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await this.commit()
        await this.wait_first(self.callback(message), self.suspend_flow.wait())
        return True
