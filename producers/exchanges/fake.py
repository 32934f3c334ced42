"""A fake exchange: serves a venue's recorded frames over a real WebSocket on 127.0.0.1, and can misbehave.

Each connection replays the capture from its start (as a fresh session with the venue would: snapshots first),
after the client's first frame (its subscription), at the recorded pace divided by ``speed`` (``speed=0``: as fast
as the socket takes them), or at a steady ``rate`` of frames per second. REST depth snapshots (Binance, Bitstamp)
are answered on the same port: with the recorded response until the capture's own snapshot time, then from a
shadow book that follows exactly the frames sent so far, so that a client resyncing mid-stream gets a snapshot
that its next frames continue.

Misbehaviours, each done once per server (unless ``repeat``), after ``after`` frames of a connection:
``drop`` (close the TCP connection without a close frame), ``stall`` (stop sending, keep the socket open),
``garbage`` (send frames that are not the venue's JSON), ``gap`` (skip one sequenced book frame),
``bad-checksum`` (corrupt the checksum of one book frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from producers.exchanges.base import Venue
from producers.exchanges.capture import CaptureFrame
from producers.exchanges.errors import ExchangeError

logger = logging.getLogger(__name__)

MISBEHAVIOURS = ("drop", "stall", "garbage", "gap", "bad-checksum")
GARBAGE: tuple[bytes, ...] = (
    b"\x00\x01 not json at all", b'{"unterminated": ', b"[1, 2, 3]", b'{"stream":"x@trade","data":{"s":1}}', b"null",
)
HOST = "127.0.0.1"
WRITE_CHUNK = 64 * 1024
PACE_STEP_S = 0.001  # paced replay: frames due within this are sent together (one write), as venues batch too
HIGH_WATER = 4 * 1024 * 1024


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked (server-to-client) final WebSocket frame, RFC 6455 section 5.2."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


@dataclass
class FakeConfig:
    speed: float = 1.0  # recorded pace multiplier; 0 = as fast as possible
    rate: float = 0.0  # when set: this many frames/s, evenly (a steady load, whatever the recording's bursts)
    misbehave: Sequence[str] = ()
    after: int = 200  # frames sent on a connection before misbehaving
    repeat: bool = False  # misbehave on every connection, not only once
    wait_subscribe_s: float = 10.0  # start anyway if the client says nothing
    exclude: bytes = b""  # frames containing these bytes are not served (e.g. b'"depthUpdate"': ticks only)


@dataclass
class FakeStats:
    connections: int = 0
    frames_sent: int = 0
    rest_requests: int = 0
    done: dict[str, int] = field(default_factory=dict)  # misbehaviour -> times done


class FakeExchange:
    """Serve ``frames`` (a venue's capture) for ``venue_cls`` clients."""

    def __init__(self, venue_cls: type[Venue], frames: list[CaptureFrame], config: FakeConfig | None = None) -> None:
        self.venue_cls = venue_cls
        self.config = config or FakeConfig()
        for m in self.config.misbehave:
            if m not in MISBEHAVIOURS:
                raise ExchangeError(f"unknown misbehaviour {m!r}; known: {', '.join(MISBEHAVIOURS)}")
        excluded = self.config.exclude
        self.frames = [
            f for f in frames if f.kind in ("recv", "http") and not (excluded and excluded in f.payload)
        ]
        self.wire = [ws_frame(f.payload) if f.kind == "recv" else b"" for f in self.frames]
        self.recorded_rest = self._recorded_rest()
        self.stats = FakeStats()
        self.shadow: Venue | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = ""  # the misbehaviour that stopped the current replay: drop | stall
        self.port = 0

    def _recorded_rest(self) -> dict[str, bytes]:
        probe = self.venue_cls()
        out: dict[str, bytes] = {}
        for f in self.frames:
            if f.kind == "http":
                sym = probe.symbol_of_rest(f.url) or (probe.symbols[0] if len(probe.symbols) == 1 else "BTCUSDT")
                out.setdefault(sym.upper(), f.payload)
        return out

    # --- server ---------------------------------------------------------------------------------------------
    async def start(self, port: int = 0) -> int:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        logger.info("fake %s exchange on ws://%s:%d", self.venue_cls.name, HOST, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._serve_ws(request)
        return self._serve_rest(request)

    def _serve_rest(self, request: web.Request) -> web.Response:
        self.stats.rest_requests += 1
        probe = self.venue_cls()
        symbol = probe.symbol_of_rest(str(request.rel_url))
        if symbol is None:
            return web.Response(status=404, text="no such endpoint")
        body = None
        render = getattr(self.shadow, "render_snapshot", None)
        if render is not None:
            body = render(symbol)
        body = body or self.recorded_rest.get(symbol.upper())
        if body is None:
            return web.Response(status=404, text=f"no snapshot for {symbol}")
        return web.Response(body=body, content_type="application/json")

    # --- the replay -----------------------------------------------------------------------------------------
    def _due(self, name: str) -> bool:
        return name in self.config.misbehave and (self.config.repeat or not self.stats.done.get(name))

    def _did(self, name: str) -> None:
        self.stats.done[name] = self.stats.done.get(name, 0) + 1
        logger.info("fake %s: misbehaving: %s", self.venue_cls.name, name)

    async def _serve_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        self._new_shadow()  # a new session: REST answers restart from the recording
        await ws.prepare(request)
        self.stats.connections += 1
        subscribed = asyncio.Event()
        reader = asyncio.create_task(self._read_client(ws, subscribed))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(subscribed.wait(), self.config.wait_subscribe_s)
        replay = asyncio.create_task(self._replay(ws, request))
        try:
            await asyncio.wait({reader, replay}, return_when=asyncio.FIRST_COMPLETED)  # the client left, or done
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            replay.cancel()
            reader.cancel()
            await asyncio.gather(replay, reader, return_exceptions=True)
        return ws

    async def _read_client(self, ws: web.WebSocketResponse, subscribed: asyncio.Event) -> None:
        """Read the client for the whole connection, as a server does: answer its frames (a SUBSCRIBE ack where
        the venue sends one), note the first one (the replay starts), and see its close handshake."""
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                ack = getattr(self.venue_cls, "fake_ack", None)
                reply = ack(msg.data.encode()) if ack is not None else None
                if reply is not None:
                    await ws.send_str(reply.decode())
            subscribed.set()

    async def _replay(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        transport = request.transport
        if transport is None:
            return
        sent, first_ts, buf = 0, None, bytearray()
        started, speed, rate = time.monotonic(), self.config.speed, self.config.rate
        for i, fr in enumerate(self.frames):
            if transport.is_closing():
                return
            if self._feed_shadow(fr):
                continue
            if rate > 0 or speed > 0:  # each frame has a due time; what is due within a step goes at once
                first_ts = fr.ts_ns if first_ts is None else first_ts
                offset = sent / rate if rate > 0 else (fr.ts_ns - first_ts) / 1e9 / speed
                wait = started + offset - time.monotonic()
                if wait > PACE_STEP_S:
                    if buf:
                        transport.write(bytes(buf))
                        buf.clear()
                    await asyncio.sleep(wait)
            wire = self._misbehave(fr, self.wire[i], sent)
            if wire is None:
                return await self._after_stop(ws, transport, buf)
            buf += wire
            sent += 1
            self.stats.frames_sent += 1
            if len(buf) >= WRITE_CHUNK:
                transport.write(bytes(buf))
                buf.clear()
                await self._drain(transport)
        if buf:
            transport.write(bytes(buf))
        await asyncio.Event().wait()  # the recording is over: stay connected, silent, until the client leaves

    def _new_shadow(self) -> None:
        # the shadow book only matters to a client resyncing mid-stream, which only misbehaviour causes
        wants_shadow = self.venue_cls.resync_how == "snapshot" and bool(self.config.misbehave)
        self.shadow = self.venue_cls() if wants_shadow else None

    def _feed_shadow(self, fr: CaptureFrame) -> bool:
        """Keep the shadow book in step; True for a REST frame (not sent on the socket)."""
        shadow = self.shadow
        if fr.kind == "http":
            if shadow is not None:
                sym = shadow.symbol_of_rest(fr.url) or (shadow.symbols[0] if len(shadow.symbols) == 1 else "BTCUSDT")
                shadow.on_snapshot(sym, fr.payload, fr.ts_ns)
                shadow.take_resyncs()
            return True
        if shadow is not None and self.venue_cls.book_marker in fr.payload:
            shadow.handle(fr.payload, fr.ts_ns)
            shadow.take_resyncs()
        return False

    def _misbehave(self, fr: CaptureFrame, wire: bytes, sent: int) -> bytes | None:
        """The bytes to send for this frame (None: stop sending) after applying any due misbehaviour."""
        if sent < self.config.after:
            return wire
        for name in ("drop", "stall"):
            if self._due(name):
                self._did(name)
                self._stopping = name
                return None
        if self._due("garbage"):
            self._did("garbage")
            return b"".join(ws_frame(g) for g in GARBAGE) + wire
        marker = self.venue_cls.book_marker
        if self._due("gap") and marker and marker in fr.payload:
            self._did("gap")
            return b""
        cs = self.venue_cls.checksum_field
        if self._due("bad-checksum") and cs and cs in fr.payload:
            self._did("bad-checksum")
            return ws_frame(_corrupt(fr.payload, cs))
        return wire

    async def _after_stop(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport, buf: bytearray) -> None:
        if buf:
            transport.write(bytes(buf))  # type: ignore[attr-defined]
        if self._stopping == "drop":
            transport.abort()  # type: ignore[attr-defined]
            return
        await asyncio.Event().wait()  # stall: say nothing until the client gives up

    async def _drain(self, transport: asyncio.BaseTransport) -> None:
        while transport.get_write_buffer_size() > HIGH_WATER and not transport.is_closing():  # type: ignore[attr-defined]
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)


def _corrupt(payload: bytes, field: bytes) -> bytes:
    """Change the first digit after ``field`` (e.g. ``"c":"123"`` -> ``"c":"223"``): a wrong checksum."""
    pattern = re.compile(re.escape(field) + rb"(-?)(\d)")

    def bump(m: re.Match[bytes]) -> bytes:
        digit = (int(m.group(2)) + 1) % 10 or 1
        return field + m.group(1) + str(digit).encode()

    return pattern.sub(bump, payload, count=1)
