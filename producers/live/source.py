"""The live Databento source: the official client's session -> resume filter -> framer -> Kafka (docs/live.md).

One :class:`databento.Live` client per connection, connected to the gateway (``gateway``/``port`` override the
dataset's own). Its callback runs on the client's event-loop thread and only hands records over through a bounded
queue; deduplication, framing and publishing happen on the caller's thread, which also serves the framer's linger
and Kafka's delivery reports while the feed is quiet. A record as the client hands it over::

    MboMsg(ts_recv=1703545200012847345, rtype=160, publisher_id=1, instrument_id=17077,
           ts_event=1703545200012583149, action='A', side='B', price=4806500000000, size=1, channel_id=0,
           order_id=6412784436137, flags=130, ts_in_delta=15862, sequence=5339)

A dropped connection is retried with exponential backoff; the resubscription asks for an intraday replay from the
last published ``ts_event`` and :class:`~producers.live.resume.ResumeFilter` drops what was published already.
Refusals (key, dataset, symbols, schema) and a stream that is not DBN stop the source with a clear error;
sessions that keep failing without a new record stop it after ``max_attempts``.
"""

from __future__ import annotations

import logging
import queue
import struct
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import databento_dbn as dbn

from producers.errors import ProducerError
from producers.framing import Framer
from producers.kafka_out import FrameSink
from producers.live.health import LiveMetrics
from producers.live.resume import ResumeFilter
from producers.live.session import GatewaySession, SessionEnd
from producers.pacing import format_ts
from producers.replay_source import RawChunk

logger = logging.getLogger(__name__)

INBOX_MAX = 200_000  # records between the client's thread and ours; a full inbox pauses the client's reading
BATCH = 4096  # records taken from the inbox at once
IDLE_STEP_S = 0.05
WATCHDOG_MARGIN_S = 10.0  # /health turns 503 after heartbeat interval + this without a message
_ACTIONS = b"ACMRTFN"
_SIDES = b"ABN"
_HEAD = struct.Struct("<4xIQ")  # instrument_id, ts_event of a 56-byte MboMsg
FATAL_CODES = frozenset({"AUTH_FAILED", "API_KEY_DEACTIVATED", "SYMBOL_RESOLUTION_FAILED", "INVALID_SUBSCRIPTION",
                         "REPLAY_DATA_AGED_OUT"})


class LiveError(ProducerError):
    """The live source cannot go on: no key, a refusal by the gateway, a stream that is not DBN, no progress."""


def api_key(environ: Mapping[str, str]) -> str:
    """The Databento API key from ``DATABENTO_API_KEY``; :class:`LiveError` with what to do when it is absent."""
    key = environ.get("DATABENTO_API_KEY", "").strip()
    if not key:
        raise LiveError(
            "DATABENTO_API_KEY is not set: `orderflow live` needs a Databento API key (databento.com, portal > API "
            "keys). Without one, publish recorded data instead: `orderflow replay FILE` (what ops/demo.sh runs), "
            "or try the command against `orderflow fake-databento FILE`"
        )
    return key


@dataclass
class LiveOptions:
    """What to subscribe to and how to behave."""

    key: str
    dataset: str
    symbols: list[str]
    stype_in: str = "raw_symbol"
    start_ns: int | None = None  # intraday replay from here (ts_event); None: from now
    gateway: str | None = None  # None: the dataset's own gateway
    port: int = 13000
    max_records: int = 250
    linger_s: float = 0.005
    backoff_s: float = 0.5  # first wait before reconnecting; doubles per session without a new record
    backoff_max_s: float = 30.0
    max_attempts: int = 10  # sessions in a row without a new record before giving up (0: never give up)
    heartbeat_s: int = 30  # heartbeat interval asked from the gateway
    stop_after: int | None = None  # stop once this many records were published
    progress: bool = True


@dataclass
class LiveState:
    """What the source has done; read by /health and the progress line."""

    state: str = "starting"  # starting | connecting | streaming | backoff | stopping | finished | failed
    connected: bool = False
    session_id: str | None = None
    connections: int = 0  # sessions attempted
    records_received: int = 0
    records_published: int = 0
    rejected: int = 0
    last_ts_event: int | None = None
    last_message: float | None = None  # monotonic time of the last record or heartbeat
    last_error: str | None = None
    started: float = field(default_factory=time.monotonic)


DeadLetterFn = Callable[[bytes | None, bytes, str], None]  # (key, raw record, reason)


class LiveSource:
    """Runs sessions until stopped, a fatal error, or ``stop_after`` records; call :meth:`run` once."""

    def __init__(
        self, options: LiveOptions, sink: FrameSink, metrics: LiveMetrics | None = None,
        dead_letter: DeadLetterFn | None = None, progress_out: TextIO | None = None,
        session_factory: Callable[..., GatewaySession] = GatewaySession,
    ) -> None:
        self.opts = options
        self.sink = sink
        self.metrics = metrics
        self.dead_letter = dead_letter
        self.progress_out = progress_out or sys.stderr
        self.session_factory = session_factory
        self.framer = Framer(options.max_records, options.linger_s)
        self.resume = ResumeFilter()
        self.st = LiveState()
        self.symbols: dict[int, str] = {}
        self.inbox: queue.Queue[Any] = queue.Queue(INBOX_MAX)
        self.source_name = f"databento:{options.dataset}"
        self._session_start: int | None = None  # the first session's metadata start: resume point before any record
        self._stop = False
        self._fatal: LiveError | None = None
        self._tick_at = 0.0
        self._tick_records = 0
        self._duplicates_counted = 0

    # -- control from outside ------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop (signal handlers call this): the session is closed, pending frames flushed, :meth:`run` returns."""
        self._stop = True

    def health(self) -> tuple[bool, dict[str, Any]]:
        st, now = self.st, time.monotonic()
        age = None if st.last_message is None else round(now - st.last_message, 3)
        ok = st.connected and age is not None and age < self.opts.heartbeat_s + WATCHDOG_MARGIN_S
        return ok, {
            "ok": ok, "state": st.state, "connected": st.connected, "session_id": st.session_id,
            "dataset": self.opts.dataset, "connections": st.connections, "last_message_age_s": age,
            "records_received": st.records_received, "records_published": st.records_published,
            "duplicates_dropped": self.resume.duplicates, "rejected": st.rejected,
            "records_delivered": self.sink.stats.records_delivered, "last_ts_event": st.last_ts_event,
            "last_time": format_ts(st.last_ts_event), "last_error": st.last_error,
        }

    # -- the loop --------------------------------------------------------------------------------------------------

    def run(self) -> LiveState:
        """Sessions with backoff until stopped; raises :class:`LiveError` when it cannot go on."""
        failures = 0
        self._tick_at = time.monotonic()
        try:
            while not self._stop:
                published = self._session(self._next_start())
                if self._fatal is not None:
                    raise self._fatal
                if self._stop:
                    break
                failures = 0 if published else failures + 1
                if self.opts.max_attempts and failures >= self.opts.max_attempts:
                    raise LiveError(
                        f"gave up after {failures} sessions in a row without a new record; last error: "
                        f"{self.st.last_error}"
                    )
                self._backoff(failures)
            self.st.state = "stopping"
        except LiveError as e:
            self.st.state, self.st.last_error = "failed", str(e)
            raise
        finally:
            self.st.connected = False
            self._send(self.framer.flush(time.time_ns()))
            self._progress(time.monotonic(), final=True)
        return self.st

    def _next_start(self) -> int | None:
        if self.st.connections == 0:
            return self.opts.start_ns
        self.resume.resume()
        start = self.resume.resume_start()
        if start is None:  # nothing published yet: from the original start, else from when the first session began
            start = self.opts.start_ns if self.opts.start_ns is not None else self._session_start
        return start

    def _session(self, start: int | None) -> int:
        """One session, from connecting to its end; returns how many records it published."""
        self.st.state = "connecting"
        self.st.connections += 1
        before = self.st.records_published
        logger.info("connecting to the %s gateway%s (session %d), symbols %s, start %s", self.opts.dataset,
                    f" at {self.opts.gateway}:{self.opts.port}" if self.opts.gateway else "", self.st.connections,
                    ",".join(self.opts.symbols), format_ts(start) or "now")
        try:
            session = self.session_factory(self.opts, start, self._deliver)
            self.st.session_id = session.open()
        except SessionEnd as e:
            self._ended(e)
            return 0
        if self.metrics is not None:
            self.metrics.connections.inc()
            self.metrics.connected.set(1)
        self.st.connected, self.st.state, self.st.last_message = True, "streaming", time.monotonic()
        try:
            self._consume(session)
        finally:
            self.st.connected = False
            if self.metrics is not None:
                self.metrics.connected.set(0)
        end = session.close()
        if end is not None and not self._stop and self._fatal is None:
            self._ended(end)
        return self.st.records_published - before

    def _ended(self, end: SessionEnd) -> None:
        self.st.last_error = str(end)
        if end.fatal:
            self._fatal = self._fatal or LiveError(str(end))
            return
        if self.metrics is not None:
            self.metrics.disconnects.inc()
        logger.warning("session %d ended: %s", self.st.connections, end, extra={"dataset": self.opts.dataset})

    def _deliver(self, record: Any) -> bool:
        """Called on the client's thread for every record; False once the source stops or failed (the record is
        dropped: the session is closing)."""
        while not self._stop and self._fatal is None:
            try:
                self.inbox.put(record, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _consume(self, session: GatewaySession) -> None:
        """Handle records until the session ends (and its records are all handled), a stop or a fatal error."""
        while True:
            batch = self._take(self._wait_s())
            if self._session_start is None:  # the metadata comes first in the stream, a moment after start_session
                self._session_start = session.metadata_start()
            if batch:
                self._handle(batch)
            now = time.monotonic()
            self._send(self.framer.poll(now, time.time_ns()))
            self.sink.poll()
            if now - self._tick_at >= 1.0:
                self._progress(now)
            if self._fatal is not None or self._stop:
                session.stop()
                return
            if not batch and not session.connected() and self.inbox.empty():
                return

    def _wait_s(self) -> float:
        deadline = self.framer.next_deadline()
        if deadline is None:
            return IDLE_STEP_S
        return min(IDLE_STEP_S, max(0.0, deadline - time.monotonic()))

    def _take(self, wait_s: float) -> list[Any]:
        try:
            first = self.inbox.get(timeout=wait_s) if wait_s > 0 else self.inbox.get_nowait()
        except queue.Empty:
            return []
        batch = [first]
        try:
            while len(batch) < BATCH:
                batch.append(self.inbox.get_nowait())
        except queue.Empty:
            pass
        return batch

    def _handle(self, batch: list[Any]) -> None:
        raws: list[bytes] = []
        admit = self.resume.admit
        received = 0
        for record in batch:
            if not isinstance(record, dbn.MBOMsg):
                self._control(record)
                continue
            raw = bytes(record)
            received += 1
            if raw[38] not in _ACTIONS or raw[39] not in _SIDES:
                self._reject(raw)
                continue
            instrument_id, ts_event = _HEAD.unpack_from(raw)
            if admit(instrument_id, ts_event, raw):
                raws.append(raw)
                if self.opts.stop_after is not None and self.st.records_published + len(raws) >= self.opts.stop_after:
                    self.stop()
                    break
        self.st.last_message = time.monotonic()
        self.st.records_received += received
        if self.metrics is not None:
            self.metrics.records_received.inc(received)
            self.metrics.duplicates.inc(self.resume.duplicates - self._duplicates_counted)
        self._duplicates_counted = self.resume.duplicates
        if raws:
            self._publish(raws)

    def _publish(self, raws: list[bytes]) -> None:
        chunk = RawChunk(memoryview(b"".join(raws)), self.source_name, self.st.records_published, self.symbols)
        now, ts_sent = time.monotonic(), time.time_ns()
        for block in chunk.blocks():
            self._send(self.framer.add(block, now, ts_sent))
        self.st.records_published += len(raws)
        self.st.last_ts_event = _HEAD.unpack_from(raws[-1])[1]
        if self.metrics is not None:
            self.metrics.last_ts_event.set(self.st.last_ts_event / 1e9)

    def _send(self, frames: list[Any]) -> None:
        for frame in frames:
            self.sink.send(frame)

    def _control(self, record: Any) -> None:
        """Symbol mappings, gateway errors and system messages."""
        if isinstance(record, dbn.SymbolMappingMsg):
            self.symbols[record.instrument_id] = record.stype_out_symbol or record.stype_in_symbol
        elif isinstance(record, dbn.ErrorMsg):
            self._gateway_error(record)
        elif isinstance(record, dbn.SystemMsg):
            self.st.last_message = time.monotonic()
            code = _code_name(record.code)
            if code == "SLOW_READER_WARNING":
                logger.warning("gateway: %s", record.msg)
            elif code != "HEARTBEAT":
                logger.info("gateway: %s (%s)", record.msg, code)

    def _gateway_error(self, record: Any) -> None:
        code = _code_name(record.code)
        text = f"the {self.opts.dataset} gateway reported {code}: {record.err}"
        self.st.last_error = text
        if self.metrics is not None:
            self.metrics.gateway_errors.inc()
        if code in FATAL_CODES:
            hint = {"SYMBOL_RESOLUTION_FAILED": f" (symbols {','.join(self.opts.symbols)}, --stype-in "
                                                f"{self.opts.stype_in})"}.get(code, "")
            self._fatal = self._fatal or LiveError(text + hint)
        logger.error("%s", text, extra={"dataset": self.opts.dataset, "code": code})

    def _reject(self, raw: bytes) -> None:
        instrument_id, ts_event = _HEAD.unpack_from(raw)
        reason = f"invalid action {chr(raw[38])!r} or side {chr(raw[39])!r} (instrument {instrument_id}, ts_event " \
                 f"{ts_event})"
        self.st.rejected += 1
        if self.metrics is not None:
            self.metrics.rejected.inc()
        logger.error("refusing to publish a record from %s: %s", self.source_name, reason)
        if self.dead_letter is not None:
            self.dead_letter(str(instrument_id).encode(), raw, reason)

    def _backoff(self, failures: int) -> None:
        wait = min(self.opts.backoff_max_s, self.opts.backoff_s * 2 ** failures)
        self.st.state = "backoff"
        logger.info("reconnecting in %.1f s", wait)
        until = time.monotonic() + wait
        while not self._stop and (now := time.monotonic()) < until:
            time.sleep(min(IDLE_STEP_S, until - now))
            self._send(self.framer.poll(time.monotonic(), time.time_ns()))
            self.sink.poll()

    def _progress(self, now: float, final: bool = False) -> None:
        st, stats = self.st, self.sink.stats
        rate = (stats.records_sent - self._tick_records) / max(1e-9, now - self._tick_at)
        self._tick_at, self._tick_records = now, stats.records_sent
        if self.metrics is not None:
            self.metrics.rate.set(0.0 if final else rate)
            self.metrics.queue_depth.set(self.sink.queue_depth())
        if self.opts.progress:
            print(f"{st.state:<10} {stats.records_sent:>13,} records {rate:>12,.0f} rec/s  at "
                  f"{format_ts(st.last_ts_event) or '-'}  session {st.connections}  duplicates dropped "
                  f"{self.resume.duplicates:,}  delivered {stats.records_delivered:,}",
                  file=self.progress_out, flush=True)


def _code_name(code: Any) -> str:
    return str(getattr(code, "name", code))
