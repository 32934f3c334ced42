"""A fake Databento live gateway on loopback that streams the MBO records of a DBN file (see docs/live.md).

It speaks the live protocol as the official client expects it: a text handshake of ``key=value|...`` lines, then
a DBN stream. A session, as the gateway writes (``>``) and reads (``<``) it::

    > lsg_version=0.0.0-orderflow-fake
    > cram=8f3c0d7e61a24e0fb9d2a7c5e4b1f6a3
    < auth=<sha256 of "cram|key">-<last 5 chars of key>|dataset=GLBX.MDP3|encoding=dbn|ts_out=0|compression=none|...
    > success=1|session_id=1
    < schema=mbo|stype_in=raw_symbol|symbols=ESH4|start=1703545200000000000|snapshot=0|id=0|is_last=1
    < start_session=0
    > DBN metadata (version 3), one SymbolMappingMsg per instrument, then the MBO records; heartbeats when idle

Behaviour, chosen so that tests can provoke what a real gateway does:

- the feed is the file, in file order. A subscription with ``start`` gets the records with ``ts_event >= start``
  (Databento's intraday replay filters MBO on ``ts_event``), then a "replay completed" system message;
- without ``start`` a connection joins the feed "now": the live position, which is the file's start at first and
  moves past the records a dropped connection did not see plus ``outage_records`` that "happened" while the
  client was away. A client that resubscribes without ``start`` therefore misses records, as it would for real;
- ``drop_after=[n0, n1, ...]``: connection *k* is cut after sending ``n_k`` records. The gateway closes its
  socket (a FIN after the data, not a reset, so that the client surely received the ``n_k`` records: tests rely on
  the count; the source treats any end it did not ask for the same way);
- ``garbage_after``: after that many records the stream turns into bytes that are not DBN;
- ``invalid_at``: the records at these feed indexes go out with action ``X`` (valid DBN, an invalid record);
- a wrong key gets ``success=0|error=...``; a symbol the file does not hold gets an ErrorMsg
  (SYMBOL_RESOLUTION_FAILED), a schema other than mbo an ErrorMsg (INVALID_SUBSCRIPTION).

The whole file is decoded once (``databento_dbn``, upgraded to DBN v3) and each record kept as bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import databento_dbn

from producers.errors import ProducerError
from producers.readers.dbn import UPGRADE
from producers.readers.source import open_binary

logger = logging.getLogger(__name__)
dbn: Any = databento_dbn  # its stubs type the enum members as plain ints and strings

VERSION = "0.0.0-orderflow-fake"
DEFAULT_KEY = "db-fake0000000000000000000000"  # the key the fake accepts unless told otherwise
ALL_SYMBOLS = "ALL_SYMBOLS"
WRITE_BATCH = 512  # records per socket write
LINE_LIMIT = 64 * 1024


class GatewayError(ProducerError):
    """The fake gateway could not start (unreadable file, port taken)."""


@dataclass(frozen=True)
class Feed:
    """The records of a DBN file as the gateway streams them."""

    dataset: str
    records: list[bytes]  # each record's bytes, DBN v3
    ts_event: list[int]
    instruments: list[int]  # instrument_id of each record
    symbols: dict[str, int]  # raw symbol -> instrument_id

    @classmethod
    def load(cls, path: str | Path) -> Feed:
        """Decode ``path`` (DBN v1-v3, plain or zstd); keeps MBO records, learns symbols from the metadata."""
        try:
            with open_binary(Path(path)) as (_, stream):
                decoded = dbn.DBNDecoder(upgrade_policy=UPGRADE).write_and_decode(stream.read())
        except (OSError, dbn.DBNError) as e:
            raise GatewayError(f"{path}: cannot read it as DBN: {e}") from e
        metadata, body = decoded[0], decoded[1:]
        mbo = [r for r in body if isinstance(r, dbn.MBOMsg)]
        if not mbo:
            raise GatewayError(f"{path}: holds no MBO records")
        symbols: dict[str, int] = {}
        for raw, intervals in (metadata.mappings or {}).items():
            for interval in intervals:
                if str(interval.get("symbol", "")).isdigit():
                    symbols[raw] = int(interval["symbol"])
        for inst in {r.instrument_id for r in mbo} - set(symbols.values()):
            symbols[str(inst)] = inst  # no mapping in the file: the instrument id stands for the symbol
        return cls(
            dataset=str(metadata.dataset), records=[bytes(r) for r in mbo], ts_event=[r.ts_event for r in mbo],
            instruments=[r.instrument_id for r in mbo], symbols=symbols,
        )


@dataclass
class GatewayOptions:
    """How the fake behaves; see the module docstring."""

    key: str = DEFAULT_KEY
    drop_after: list[int] = field(default_factory=list)
    outage_records: int = 1000
    garbage_after: int | None = None
    invalid_at: list[int] = field(default_factory=list)  # feed indexes whose action byte is sent as 'X'
    heartbeat_s: float | None = None  # None: the interval the client asked for


@dataclass
class Subscription:
    schema: str
    symbols: list[str]
    start: int | None


@dataclass
class GatewayStats:
    connections: int = 0
    sessions: int = 0  # connections that started streaming
    records_sent: int = 0
    starts: list[int | None] = field(default_factory=list)  # the start of each session, None when absent


class FakeGateway:
    """Serves the live protocol on ``host:port`` from a background thread; a context manager."""

    def __init__(self, feed: Feed, options: GatewayOptions | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.feed = feed
        self.options = options or GatewayOptions()
        self.host = host
        self.port = port
        self.stats = GatewayStats()
        self.live_index = 0  # the "now" of the feed for subscriptions without start
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-databento", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> FakeGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FakeGateway:
        self._thread.start()
        try:
            self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        except OSError as e:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise GatewayError(f"cannot listen on {self.host}:{self.port}: {e.strerror or e}") from e
        self.port = int(self._server.sockets[0].getsockname()[1])
        logger.info("fake Databento gateway on %s:%d, dataset %s, %d records, symbols %s", self.host, self.port,
                    self.feed.dataset, len(self.feed.records), ", ".join(sorted(self.feed.symbols)))
        return self

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, self.host, self.port, limit=LINE_LIMIT)

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    # -- one connection ----------------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.stats.connections
        self.stats.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._session(number, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            logger.info("connection %d: client went away (%s)", number, e)
        except ValueError as e:
            logger.warning("connection %d: bad request: %s", number, e)
        except asyncio.CancelledError:  # the gateway stops: the connection ends with it
            logger.debug("connection %d: closed as the gateway stops", number)
        finally:
            self._tasks.discard(task)
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _session(self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        challenge = secrets.token_hex(16)
        writer.write(f"lsg_version={VERSION}\ncram={challenge}\n".encode())
        auth = parse_line(await reader.readline())
        problem = self._auth_problem(auth, challenge)
        if problem:
            writer.write(f"success=0|error={problem}\n".encode())
            await writer.drain()
            return
        writer.write(f"success=1|session_id={number + 1}\n".encode())
        subs = await read_subscriptions(reader)
        self.stats.sessions += 1
        heartbeat = self.options.heartbeat_s or float(auth.get("heartbeat_interval_s") or 30)
        await self._stream(number, subs, writer, heartbeat)

    def _auth_problem(self, auth: dict[str, str], challenge: str) -> str | None:
        key = self.options.key
        expected = hashlib.sha256(f"{challenge}|{key}".encode()).hexdigest() + "-" + key[-5:]
        if auth.get("auth") != expected:
            return "Authentication failed."
        if auth.get("dataset") != self.feed.dataset:
            return f"Unknown dataset '{auth.get('dataset')}'; this gateway serves {self.feed.dataset}"
        if auth.get("encoding", "dbn") != "dbn" or auth.get("compression", "none") != "none":
            return "This gateway only sends uncompressed DBN."
        return None

    async def _stream(self, number: int, subs: list[Subscription], writer: asyncio.StreamWriter,
                      heartbeat_s: float) -> None:
        start = subs[0].start if subs else None
        self.stats.starts.append(start)
        meta = dbn.Metadata(self.feed.dataset, start if start is not None else self._now_ns(), dbn.SType.RAW_SYMBOL,
                            dbn.SType.INSTRUMENT_ID, dbn.Schema.MBO, version=3)
        writer.write(bytes(meta.encode()))
        wanted, error = self._resolve(subs)
        if error is not None:
            writer.write(bytes(error))
            if not wanted:
                await writer.drain()
                return
        for symbol, inst in sorted(wanted.items()):
            writer.write(bytes(dbn.SymbolMappingMsg(0, inst, time.time_ns(), dbn.SType.RAW_SYMBOL, symbol,
                                                    dbn.SType.RAW_SYMBOL, symbol, 0, 2**63)))
        rows = self._rows(set(wanted.values()), start)
        logger.info("connection %d: streaming %d records (start %s)", number, len(rows), start)
        if not await self._send_rows(number, rows, writer):
            return
        if start is not None:
            done = dbn.SystemMsg(time.time_ns(), "Finished mbo replay", code=dbn.SystemCode.REPLAY_COMPLETED)
            writer.write(bytes(done))
        while True:  # the live feed is quiet from now on: heartbeats, as the real gateway sends them
            await writer.drain()
            await asyncio.sleep(heartbeat_s)
            writer.write(bytes(dbn.SystemMsg(time.time_ns(), "Heartbeat", code=dbn.SystemCode.HEARTBEAT)))

    def _now_ns(self) -> int:
        """The feed's "now": ts_event of the next live record (the last one's after the end)."""
        ts = self.feed.ts_event
        return ts[min(self.live_index, len(ts) - 1)]

    def _resolve(self, subs: list[Subscription]) -> tuple[dict[str, int], Any]:
        """(symbol -> instrument_id to stream, an ErrorMsg to send or None)."""
        bad_schema = sorted({s.schema for s in subs} - {"mbo"})
        if bad_schema:
            return {}, dbn.ErrorMsg(time.time_ns(), f"Schema {', '.join(bad_schema)} is not served by this gateway",
                                    code=dbn.ErrorCode.INVALID_SUBSCRIPTION)
        wanted: dict[str, int] = {}
        missing: list[str] = []
        for symbol in (s for sub in subs for s in sub.symbols):
            if symbol == ALL_SYMBOLS:
                wanted.update(self.feed.symbols)
            elif symbol in self.feed.symbols:
                wanted[symbol] = self.feed.symbols[symbol]
            else:
                missing.append(symbol)
        if missing:
            return wanted, dbn.ErrorMsg(time.time_ns(), f"Failed to resolve symbol(s): {', '.join(missing)}",
                                        code=dbn.ErrorCode.SYMBOL_RESOLUTION_FAILED)
        return wanted, None

    def _rows(self, instruments: set[int], start: int | None) -> list[int]:
        """Indexes of the records this subscription gets, in feed order."""
        feed = self.feed
        first = self.live_index if start is None else 0
        return [
            i for i in range(first, len(feed.records))
            if feed.instruments[i] in instruments and (start is None or feed.ts_event[i] >= start)
        ]

    async def _send_rows(self, number: int, rows: list[int], writer: asyncio.StreamWriter) -> bool:
        """Send the records; False when the connection was cut on purpose (drop or garbage)."""
        opts = self.options
        limit = opts.drop_after[number] if number < len(opts.drop_after) else None
        records = self.feed.records
        if opts.invalid_at:
            records = list(records)
            for i in opts.invalid_at:
                records[i] = records[i][:38] + b"X" + records[i][39:]
        for pos in range(0, len(rows), WRITE_BATCH):
            batch = rows[pos : pos + WRITE_BATCH]
            if opts.garbage_after is not None and pos + len(batch) > opts.garbage_after:
                good = batch[: max(0, opts.garbage_after - pos)]
                writer.write(b"".join(records[i] for i in good))
                self.stats.records_sent += len(good)
                writer.write(b"\x00<html>502 Bad Gateway</html>\n" * 8)
                await writer.drain()
                logger.info("connection %d: sent garbage after %d records", number, opts.garbage_after)
                return False
            if limit is not None and pos + len(batch) >= limit:
                cut = batch[: limit - pos]
                writer.write(b"".join(records[i] for i in cut))
                await writer.drain()
                self.stats.records_sent += len(cut)
                self._cut(number, limit, rows)
                writer.close()
                await writer.wait_closed()
                return False
            writer.write(b"".join(records[i] for i in batch))
            self.stats.records_sent += len(batch)
            await writer.drain()
        self.live_index = max(self.live_index, len(records))
        return True

    def _cut(self, number: int, sent: int, rows: list[int]) -> None:
        seen = rows[sent - 1] + 1 if sent else (rows[0] if rows else self.live_index)
        self.live_index = max(self.live_index, seen + self.options.outage_records)
        logger.info("connection %d: dropped after %d records; the live feed moves on to record %d", number, sent,
                    self.live_index)


def parse_line(line: bytes) -> dict[str, str]:
    """``a=1|b=2\\n`` -> ``{"a": "1", "b": "2"}``; ValueError for anything else."""
    if not line.endswith(b"\n"):
        raise ValueError(f"{line[:80]!r} is not a complete control line")
    try:
        text = line.decode("ascii").strip()
    except UnicodeDecodeError as e:
        raise ValueError(f"{line[:80]!r} is not ASCII") from e
    pairs = [part.partition("=") for part in text.split("|")]
    if not text or any(not sep or not key for key, sep, _ in pairs):
        raise ValueError(f"{text[:80]!r} is not a key=value|... line")
    return {key: value for key, _, value in pairs}


async def read_subscriptions(reader: asyncio.StreamReader) -> list[Subscription]:
    """Subscription lines up to ``start_session``."""
    subs: list[Subscription] = []
    while True:
        fields = parse_line(await reader.readline())
        if "start_session" in fields:
            return subs
        if "schema" not in fields or "symbols" not in fields:
            raise ValueError(f"expected a subscription or start_session, got {sorted(fields)}")
        start = fields.get("start")
        subs.append(Subscription(fields["schema"], fields["symbols"].split(","), int(start) if start else None))
