"""The writer thread: takes batches in order, writes each to the store and commits it, retrying outages.

It owns the store (one database connection). A batch whose write fails because the database is unavailable is
retried, the same batch, with exponential backoff until it succeeds: nothing is dropped, and the natural keys
make a retry of a batch that did commit before the connection broke insert nothing. Finished batches go to
:meth:`Writer.finished` for the consumer thread to commit their Kafka offsets. A refusal that retrying cannot
fix (:class:`~sinks.errors.StoreError`) stops the writer; the sink then exits without committing those offsets.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from sinks.batching import Backoff, Batch
from sinks.errors import SinkBackpressure, StoreError, StoreUnavailable
from sinks.metrics import SinkMetrics
from sinks.store import RowStore

logger = logging.getLogger(__name__)

HEALTHY, RETRYING, FAILED, STOPPED = "healthy", "retrying", "failed", "stopped"


class Writer:
    def __init__(self, connect: Callable[[], RowStore], metrics: SinkMetrics, max_queued_rows: int,
                 backoff: Backoff | None = None) -> None:
        self._connect = connect
        self._metrics = metrics
        self.max_queued_rows = max_queued_rows
        self._backoff = backoff or Backoff()
        self._queue: collections.deque[Batch] = collections.deque()
        self._done: collections.deque[Batch] = collections.deque()
        self._cond = threading.Condition()
        self._store: RowStore | None = None
        self._stopping = False
        self._in_flight_rows = 0
        self.queued_rows = 0
        self.state = HEALTHY
        self.error: BaseException | None = None
        self.last_commit_at: float | None = None  # wall clock (s) of the last database commit
        self.last_commit_mono: float | None = None  # the same on the monotonic clock
        self._thread = threading.Thread(target=self._run, name="sink-writer", daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    @property
    def pending_rows(self) -> int:
        """Row units (see ``TableSpec.weight``) queued or being written, not yet committed."""
        with self._cond:
            return self.queued_rows

    def submit(self, batch: Batch, force: bool = False) -> None:
        """Queue ``batch``; raises :class:`SinkBackpressure` (and queues nothing) when that would exceed the bound,
        unless ``force`` (used when draining on shutdown or rebalance)."""
        with self._cond:
            if self.state == FAILED:
                raise StoreError(f"the writer stopped: {self.error}")
            if not force and self._queue and self.queued_rows + batch.size > self.max_queued_rows:
                raise SinkBackpressure(self.queued_rows + batch.size, self.max_queued_rows)
            self._queue.append(batch)
            self.queued_rows += batch.size
            self._cond.notify_all()

    def wait_for_room(self, rows: int, timeout_s: float) -> bool:
        """Wait until at most ``rows`` rows are queued, or the writer leaves the healthy state, or ``timeout_s``
        passed; True when there is room."""
        with self._cond:
            self._cond.wait_for(lambda: self.queued_rows <= rows or self.state != HEALTHY, timeout_s)
            return self.queued_rows <= rows

    def finished(self) -> list[Batch]:
        """Batches committed to the database since the last call, in order."""
        with self._cond:
            out = list(self._done)
            self._done.clear()
        return out

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and self._in_flight_rows == 0

    def wait_idle(self, timeout_s: float | None) -> bool:
        """Wait until every queued batch is committed (or the writer failed); True when idle."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while (self._queue or self._in_flight_rows) and self.state != FAILED:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 1.0)
            return not self._queue and not self._in_flight_rows

    def stop(self, timeout_s: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        if self._store is not None and not self._thread.is_alive():
            self._store.close()
            self._store = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait(1.0)
                if not self._queue:
                    self.state = STOPPED if self.state != FAILED else FAILED
                    return
                batch = self._queue[0]
                self._in_flight_rows = batch.size
            if not self._write(batch):
                return
            with self._cond:
                self._queue.popleft()
                self.queued_rows -= batch.size
                self._in_flight_rows = 0
                self._done.append(batch)
                self._cond.notify_all()

    def _write(self, batch: Batch) -> bool:
        """Write and commit ``batch``, retrying outages until it succeeds or the writer is told to stop."""
        while True:
            try:
                self._write_once(batch)
                return True
            except StoreUnavailable as e:
                if not self._retry_after(e, batch):
                    return False
            except StoreError as e:
                self._fail(e, batch)
                return False
            except Exception as e:  # a bug must not hang the sink silently
                self._fail(e, batch)
                return False

    def _write_once(self, batch: Batch) -> None:
        started = time.perf_counter()
        if self._store is None:
            self._store = self._connect()
        store = self._store
        try:
            inserted = store.write_batch(batch.rows)
            store.commit()
        except StoreUnavailable:
            raise
        except StoreError:
            store.rollback()
            raise
        elapsed = time.perf_counter() - started
        self._record(batch, inserted, elapsed)

    def _record(self, batch: Batch, inserted: dict[str, int], elapsed: float) -> None:
        m = self._metrics
        for table, rows in batch.rows.items():
            new = inserted.get(table, 0)
            m.rows_written.labels(table).inc(new)
            if len(rows) > new:
                m.rows_duplicate.labels(table).inc(len(rows) - new)
        m.batches.inc()
        m.batch_seconds.observe(elapsed)
        m.batch_rows.observe(batch.n_rows)
        m.db_up.set(1)
        self.last_commit_at = time.time()
        self.last_commit_mono = time.monotonic()
        if self.state == RETRYING:
            logger.info("database is back: batch of %d rows committed after %d retries", batch.n_rows,
                        self._backoff.attempt)
        self.state = HEALTHY
        self._backoff.reset()

    def _retry_after(self, error: StoreUnavailable, batch: Batch) -> bool:
        if self._store is not None:
            self._store.close()
            self._store = None
        self.state = RETRYING
        self._metrics.retries.inc()
        self._metrics.db_up.set(0)
        delay = self._backoff.next_delay()
        where = _where(batch)
        logger.warning("database write failed (%s); retry %d in %.2f s, %d rows held", error, self._backoff.attempt,
                       delay, batch.n_rows, extra=where)
        with self._cond:
            self._cond.wait_for(lambda: self._stopping, timeout=delay)
            return not self._stopping

    def _fail(self, error: BaseException, batch: Batch) -> None:
        logger.error("database refused a batch of %d rows; stopping without committing its offsets: %s",
                     batch.n_rows, error, extra=_where(batch), exc_info=not isinstance(error, StoreError))
        with self._cond:
            self.state = FAILED
            self.error = error
            self._cond.notify_all()


def _where(batch: Batch) -> dict[str, object]:
    """topic/partition/offset of a batch's first partition, for structured logs."""
    if not batch.offsets:
        return {}
    (topic, partition), offset = next(iter(batch.offsets.items()))
    return {"topic": topic, "partition": partition, "offset": offset - 1,
            "partitions": len(batch.offsets)}
