"""The replay loop: read files in order, frame, pace, obey playback control, publish, report progress.

:class:`Replay` is independent of Kafka: it writes frames to a :class:`~producers.kafka_out.FrameSink`, so the loop
can be tested in-process with a list. The CLI (:mod:`producers.publish_cli`) wires it to Kafka, the HTTP control
API, Prometheus and signals.
"""

from __future__ import annotations

import logging
import sys
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from producers.control import PlaybackControl
from producers.framing import Framer, frame_problem
from producers.kafka_out import FrameSink
from producers.metrics import ProducerMetrics
from producers.pacing import Pacer, format_ts
from producers.replay_source import (
    CHUNK_RECORDS,
    Chunk,
    DbnChunks,
    FileInfo,
    InvalidRecordError,
    ReaderChunks,
    is_dbn,
    window,
)

logger = logging.getLogger(__name__)

IDLE_STEP_S = 0.05  # longest sleep between checks of control, signals and linger while waiting


@dataclass
class ReplayOptions:
    """What to replay and how."""

    files: list[str]
    speed: float | None = None  # None: as fast as possible
    start_ns: int | None = None
    end_ns: int | None = None
    loops: int = 1  # 0: forever
    max_records: int = 250
    linger_s: float = 0.005
    skip_invalid: bool = False
    chunk_records: int = CHUNK_RECORDS
    progress: bool = True


@dataclass
class ReplayState:
    """What the loop has done so far; read by /status and the progress line."""

    state: str = "starting"  # starting | playing | paused | seeking | stopping | finished | failed
    position_ns: int | None = None  # ts_recv of the last record handed to the framer
    records_read: int = 0
    rejected: int = 0
    loop: int = 0
    file: str | None = None
    rate: float = 0.0  # records/s over the last progress interval
    started: float = field(default_factory=time.monotonic)


class Replay:
    """One replay session over ``options.files``; call :meth:`run` once."""

    def __init__(
        self, options: ReplayOptions, sink: FrameSink, control: PlaybackControl | None = None,
        metrics: ProducerMetrics | None = None, clock: Callable[[], float] = time.monotonic,
        progress_out: TextIO | None = None,
    ) -> None:
        self.options = options
        self.sink = sink
        self.control = control or PlaybackControl(options.speed)
        self.metrics = metrics
        self.clock = clock
        self.progress_out = progress_out or sys.stderr
        self.framer = Framer(options.max_records, options.linger_s)
        self.pacer = Pacer(self.control.speed)
        self.st = ReplayState()
        self.session_start: int | None = options.start_ns
        self.session_end: int | None = options.end_ns
        self._stop = False
        self._seen_commands = -1
        self._break = False  # leave the current pass (stop or seek)
        self._seek_to: int | None = None
        self._ff_until: int | None = None  # a forward seek: send everything before this ts_recv at once
        self._tick_at = 0.0
        self._tick_records = 0

    # -- control from outside ------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading (signal handlers call this); :meth:`run` then flushes and returns."""
        self._stop = True
        self._break = True

    def status(self) -> dict[str, Any]:
        st, stats = self.st, self.sink.stats
        return {
            "state": st.state, "position_ts": st.position_ns, "position_time": format_ts(st.position_ns),
            "percent": self.percent(), "records_read": st.records_read, "records_sent": stats.records_sent,
            "records_delivered": stats.records_delivered, "frames_sent": stats.frames_sent,
            "delivery_failures": stats.frames_failed, "rejected": st.rejected, "rate": round(st.rate, 1),
            "speed": self.pacer.speed, "paused": self.control.paused, "loop": st.loop, "file": st.file,
            "session_start": self.session_start, "session_end": self.session_end,
            "queue_depth": self.sink.queue_depth(), "pending_records": self.framer.pending_records,
        }

    def percent(self) -> float | None:
        lo, hi, pos = self.session_start, self.session_end, self.st.position_ns
        if lo is None or hi is None or pos is None or hi <= lo:
            return None
        return round(min(100.0, max(0.0, 100.0 * (pos - lo) / (hi - lo))), 2)

    # -- the loop --------------------------------------------------------------------------------------------------

    def run(self) -> ReplayState:
        """Replay until the input ends or :meth:`stop`; flushes the framer; the caller flushes the sink."""
        opts = self.options
        self.st.started = self._tick_at = self.clock()
        start_ns = opts.start_ns
        try:
            while not self._stop and (opts.loops == 0 or self.st.loop < opts.loops):
                self._break = False
                self.pacer.reset()
                self._play_pass(start_ns)
                self._ff_until = None  # a fast-forward past the end of the input ends with it
                if self._seek_to is not None:
                    start_ns, self._seek_to = self._seek_to, None
                    continue
                start_ns = opts.start_ns
                if not self._break:
                    self.st.loop += 1
            self.st.state = "stopping" if self._stop else "finished"
        except InvalidRecordError:
            self.st.state = "failed"
            raise
        finally:  # what was read before a stop or an invalid record still goes out
            self._send(self.framer.flush(time.time_ns()))
            self._progress(self.clock(), final=True)
        return self.st

    def _play_pass(self, start_ns: int | None) -> None:
        self.st.state = "playing" if not self.control.paused else "paused"
        for path in self.options.files:
            self.st.file = path
            for chunk in window(self._open(path), start_ns, self.options.end_ns):
                self._play_chunk(chunk)
                if self._break:
                    return

    def _open(self, path: str) -> Iterator[Chunk]:
        opts = self.options
        source: DbnChunks | ReaderChunks
        if is_dbn(path):
            source = DbnChunks(path, opts.chunk_records, opts.skip_invalid)
        else:
            source = ReaderChunks(path, opts.chunk_records, opts.skip_invalid)
        self._note_session(source.info)
        return self._counted(source)

    def _counted(self, source: DbnChunks | ReaderChunks) -> Iterator[Chunk]:
        try:
            yield from source
        finally:
            self.st.rejected += source.rejected
            if self.metrics is not None and source.rejected:
                self.metrics.rejected.inc(source.rejected)

    def _note_session(self, info: FileInfo) -> None:
        if self.options.start_ns is None and info.start_ns is not None:
            self.session_start = min(info.start_ns, self.session_start or info.start_ns)
        if self.options.end_ns is None and info.end_ns is not None:
            self.session_end = max(info.end_ns, self.session_end or info.end_ns)

    def _play_chunk(self, chunk: Chunk) -> None:
        n = len(chunk)
        ts = chunk.ts_recv() if self.pacer.active else None
        pos = 0
        while pos < n:
            if self.control.commands != self._seen_commands or (self.control.paused and self._ff_until is None):
                self._apply_control()
            if self._break:  # a stop (signal) or a backward seek
                return
            now = self.clock()
            if self._ff_until is not None:
                ts = ts or chunk.ts_recv()
                end = bisect_left(ts, self._ff_until, pos)
                if end == pos:
                    self._end_fast_forward()
                    continue
            elif self.pacer.active:
                ts = ts or chunk.ts_recv()  # the speed may have changed from max to paced
                end = self.pacer.due(ts, pos, now)
                if end == pos:
                    self._idle(self.pacer.wait_s(ts[pos], now))
                    continue
            else:
                end = n
            part = chunk if end - pos == n else chunk.slice(pos, end)
            self._send_chunk(part, now)
            self.st.records_read += end - pos
            self.st.position_ns = part.last_ts_recv()
            pos = end
            if now - self._tick_at >= 1.0:
                self._progress(now)

    def _send_chunk(self, chunk: Chunk, now: float) -> None:
        ts_sent = time.time_ns()
        for block in chunk.blocks():
            self._send(self.framer.add(block, now, ts_sent))
        self._send(self.framer.poll(now, ts_sent))

    def _send(self, frames: list[Any]) -> None:
        for frame in frames:
            problem = frame_problem(frame)
            if problem is not None:  # the sources validate every record; this is the last line of defence
                raise InvalidRecordError(
                    self.st.file or "?", self.st.records_read,
                    f"frame of instrument {frame.instrument_id} from ts_recv {frame.ts_recv[0]}: {problem}",
                )
            self.sink.send(frame)

    def _idle(self, wait_s: float) -> None:
        """Wait for pacing, at most one step, serving linger and delivery reports meanwhile."""
        now = self.clock()
        deadline = self.framer.next_deadline()
        step = min(wait_s, IDLE_STEP_S)
        if deadline is not None:
            step = min(step, max(0.0, deadline - now))
        if step > 0:
            time.sleep(step)
        now = self.clock()
        self._send(self.framer.poll(now, time.time_ns()))
        self.sink.poll()
        if now - self._tick_at >= 1.0:
            self._progress(now)

    def _apply_control(self) -> None:
        """Apply speed, seek and pause requests; blocks here while paused."""
        control = self.control
        self._seen_commands = control.commands
        if control.speed != self.pacer.speed:
            self.pacer.set_speed(control.speed, self.st.position_ns, self.clock())
            logger.info("speed %s", control.speed or "max")
        seek = control.take_seek()
        if seek is not None:
            self._do_seek(seek)
            return
        if control.paused and self._ff_until is None:
            self._pause_until_resumed()

    def _do_seek(self, ts_ns: int) -> None:
        """Forward: every record up to ``ts_ns`` goes out at once (fast-forward), so that the books downstream
        stay whole; backward: the pass restarts at ``ts_ns`` (books that applied those records skip them again)."""
        self.st.state = "seeking"
        position = self.st.position_ns
        if position is not None and ts_ns > position and not self._break:
            logger.info("fast-forwarding to %s", format_ts(ts_ns))
            self._ff_until = ts_ns
            return
        logger.info("seeking back to %s", format_ts(ts_ns))
        self._ff_until = None
        self._send(self.framer.flush(time.time_ns()))
        self._seek_to = ts_ns
        self._break = True
        self.st.position_ns = ts_ns

    def _end_fast_forward(self) -> None:
        target, self._ff_until = self._ff_until, None
        self.st.position_ns = max(self.st.position_ns or 0, target or 0)
        self.pacer.reset()  # the pace restarts from here
        self.st.state = "paused" if self.control.paused else "playing"
        logger.info("at %s", format_ts(self.st.position_ns))

    def _pause_until_resumed(self) -> None:
        self.st.state = "paused"
        self._send(self.framer.poll(float("inf"), time.time_ns()))  # complete events go out; a partial one waits
        logger.info("paused at %s", format_ts(self.st.position_ns))
        while self.control.paused and not self._stop and not self.control.seek_pending:
            time.sleep(IDLE_STEP_S)
            self.sink.poll()
            now = self.clock()
            if now - self._tick_at >= 1.0:
                self._progress(now)
        if self.control.seek_pending:
            self._apply_control()
            return
        if self._stop:
            return
        self.st.state = "playing"
        if self.pacer.speed is not None:
            self.pacer.set_speed(self.pacer.speed, self.st.position_ns, self.clock())
        logger.info("resumed")

    # -- progress ------------------------------------------------------------------------------------------------

    def _progress(self, now: float, final: bool = False) -> None:
        st, stats = self.st, self.sink.stats
        elapsed = max(1e-9, now - self._tick_at)
        st.rate = (stats.records_sent - self._tick_records) / elapsed if not final else st.rate
        self._tick_at, self._tick_records = now, stats.records_sent
        if self.metrics is not None:
            self.metrics.rate.set(st.rate)
            self.metrics.queue_depth.set(self.sink.queue_depth())
        if not self.options.progress:
            return
        pct = self.percent()
        where = format_ts(st.position_ns) or "-"
        line = (
            f"{st.state:<8} {stats.records_sent:>13,} records {st.rate:>12,.0f} rec/s  at {where}"
            + (f" {pct:6.2f}%" if pct is not None else "")
            + f"  delivered {stats.records_delivered:,}"
        )
        print(line, file=self.progress_out, flush=True)
