"""A client WebSocket (RFC 6455) made for market-data feeds: every read off the socket hands all the complete
messages it holds to a callback at once, with one receipt time.

Venues send many small frames; a general client wakes its reader once per message (a queue, a future, a task
switch: about 3 µs of Python each), and a reader task once per read at best. Here ``data_received`` parses every
complete frame of a read in one loop and calls ``on_messages(messages, ts_recv)`` right there: no queue and no
task switch between the socket and the parser. The callback's work is the flow control: nothing more is read
until it returns, so a slow consumer holds the peer back through TCP. What it does:

- the opening handshake (``Sec-WebSocket-Key``/``-Accept`` checked, any status but 101 refused with its line);
  ``wss://`` through the default TLS context; no extensions are offered, so frames are never compressed;
- text and binary messages, fragmented or not (control frames may come between fragments);
- pings answered with a pong of the same payload; pongs ignored;
- the closing handshake: :meth:`WebSocket.close` sends a close frame and waits up to ``close_timeout`` for the
  peer's, then drops the connection; a peer's close frame is answered and ends the stream;
- a callback that raises ends the connection (code 1011) with the error as the reason, logged;
- a protocol violation (masked or reserved-bit frame, oversize message, bad opcode) closes with the RFC's code and
  a reason naming it.

Client frames are masked, as the RFC requires.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import ssl
import struct
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

from producers.exchanges.errors import ExchangeError

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
MAX_HEADER_BYTES = 64 * 1024  # of the handshake's response
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
NORMAL, PROTOCOL_ERROR, TOO_BIG, INTERNAL_ERROR = 1000, 1002, 1009, 1011

OnMessages = Callable[[list[bytes], int], None]  # (the messages of one read, its receipt time in ns)
logger = logging.getLogger(__name__)


class WebSocketError(ExchangeError):
    """The connection could not be opened, or the peer broke the protocol."""


class _Protocol(asyncio.Protocol):
    """Handshake, then frames -> ``on_messages``."""

    def __init__(self, key: bytes, on_messages: OnMessages, max_message: int) -> None:
        self.key = key
        self.on_messages = on_messages
        self.max_message = max_message
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()  # closed, or interrupted by the consumer
        self.closed: asyncio.Future[None] = loop.create_future()  # the TCP connection is gone
        self.stopped = False  # the consumer wants no more messages (interrupt, or our close)
        self.close_sent = False
        self.close_code: int | None = None
        self.close_reason = ""
        self._partial = bytearray()  # bytes of an incomplete frame (or handshake response)
        self._need = 0  # how many bytes ``_partial`` must reach before parsing again
        self._fragments: list[bytes] = []
        self._fragment_size = 0
        self._open = False
        self._read_done = False  # the peer's close frame came, or it broke the protocol: nothing more is parsed

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport objects

    def data_received(self, data: bytes) -> None:
        ts_recv = time.time_ns()
        if self._partial:  # the rest of a frame (or of the handshake) that an earlier read began
            self._partial += data
            if len(self._partial) < self._need:
                return
            data, self._partial = bytes(self._partial), bytearray()
        if not self._open:
            data = self._handshake(data)
            if not data:
                return
        messages: list[bytes] = []
        used = self._parse(data, messages)
        if used < len(data):
            self._partial = bytearray(data[used:])
        if messages and not self.stopped:
            try:
                self.on_messages(messages, ts_recv)
            except Exception as e:
                logger.exception("the message handler failed; closing the connection")
                self._protocol_error(INTERNAL_ERROR, f"message handler failed: {e!r}")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(WebSocketError(f"connection closed during the handshake: {exc or 'EOF'}"))
        if self.close_code is None:
            self.close_code, self.close_reason = 1006, f"connection lost: {exc}" if exc else "connection lost"
        if not self.closed.done():
            self.closed.set_result(None)
        self._end()

    # ------------------------------------------------------------------ handshake
    def _handshake(self, data: bytes) -> bytes:
        """Check the server's response once it is whole; the bytes after it (frames), or b"" until then."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > MAX_HEADER_BYTES:
                self._fail_open("handshake response headers too long")
            else:
                self._partial, self._need = bytearray(data), len(data) + 1
            return b""
        head, rest = data[:end].decode("latin-1"), data[end + 4:]
        status, *lines = head.split("\r\n")
        if status.split(" ", 2)[1:2] != ["101"]:
            self._fail_open(f"handshake refused: {status!r}")
            return b""
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        expected = base64.b64encode(hashlib.sha1(self.key + GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            self._fail_open("handshake: Sec-WebSocket-Accept does not match the key sent")
            return b""
        if headers.get("sec-websocket-extensions"):
            self._fail_open(f"handshake: extension {headers['sec-websocket-extensions']!r} was not offered")
            return b""
        self._open = True
        self.opened.set_result(None)
        return rest

    def _fail_open(self, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(WebSocketError(reason))
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ frames
    def _parse(self, buf: bytes, out: list[bytes]) -> int:
        """Every complete frame in ``buf``: data messages into ``out``, control frames answered. Returns the bytes
        used; ``_need`` is then how many the incomplete frame at that point needs in all."""
        pos, size = 0, len(buf)
        while not self._read_done:
            if size - pos < 2:
                self._need = 2
                break
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    self._need = 4
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    self._need = 10
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if b1 & 0x80 or b0 & 0x70:
                self._protocol_error(PROTOCOL_ERROR, "masked frame from the server" if b1 & 0x80
                                     else "reserved bits set (no extension was negotiated)")
                break
            if length > self.max_message:
                self._protocol_error(TOO_BIG, f"frame of {length} bytes over the {self.max_message}-byte limit")
                break
            end = pos + head + length
            if end > size:
                self._need = head + length
                break
            payload = buf[pos + head:end]
            pos = end
            opcode = b0 & 0x0F
            if b0 & 0x80 and opcode in (TEXT, BINARY) and not self._fragments:
                out.append(payload)  # the common case: one whole message in one frame
            else:
                self._frame(b0 & 0x80, opcode, payload, out)
        return pos

    def _frame(self, fin: int, opcode: int, payload: bytes, out: list[bytes]) -> None:
        if opcode == PING:
            self.send_frame(PONG, payload)
        elif opcode == PONG:
            pass
        elif opcode == CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if self.close_code is None:  # the peer's close (else its answer to ours: ours says why)
                self.close_code, self.close_reason = code, payload[2:].decode("utf-8", "replace")
            self._read_done = True
            self._end()
            self._send_close(NORMAL if code == 1005 else code)
            if self.transport is not None:
                self.transport.close()
        elif opcode in (TEXT, BINARY, CONTINUATION):
            self._fragment(fin, opcode, payload, out)
        else:
            self._protocol_error(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")

    def _fragment(self, fin: int, opcode: int, payload: bytes, out: list[bytes]) -> None:
        if (opcode == CONTINUATION) != bool(self._fragments):
            self._protocol_error(PROTOCOL_ERROR, "continuation frame without a message to continue"
                                 if opcode == CONTINUATION else "new message inside a fragmented one")
            return
        self._fragments.append(payload)
        self._fragment_size += len(payload)
        if self._fragment_size > self.max_message:
            self._protocol_error(TOO_BIG, f"message over the {self.max_message}-byte limit")
        elif fin:
            out.append(b"".join(self._fragments))
            self._fragments, self._fragment_size = [], 0

    def _protocol_error(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self._read_done = True
        self._end()
        self._send_close(code, reason)
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ sending
    def send_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise WebSocketError("the connection is closed")
        self.transport.write(_frame(opcode, payload))

    def _send_close(self, code: int, reason: str = "") -> None:
        if self.close_sent or self.transport is None or self.transport.is_closing():
            return
        self.close_sent = True
        self.transport.write(_frame(CLOSE, code.to_bytes(2, "big") + reason.encode()[:120]))

    def _end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


class WebSocket:
    """One open client connection; see the module docstring."""

    def __init__(self, protocol: _Protocol, close_timeout: float) -> None:
        self._p = protocol
        self.close_timeout = close_timeout

    @classmethod
    async def connect(cls, url: str, on_messages: OnMessages, timeout: float = 10.0, close_timeout: float = 2.0,
                      max_message: int = MAX_MESSAGE_BYTES, ssl_context: ssl.SSLContext | None = None) -> WebSocket:
        """Open ``url`` (``ws://`` or ``wss://``); from then on every read's messages go to ``on_messages``.
        Raises :class:`WebSocketError`, ``OSError`` or ``TimeoutError``."""
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise WebSocketError(f"not a ws:// or wss:// URL: {url!r}")
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        key = base64.b64encode(os.urandom(16))
        loop = asyncio.get_running_loop()
        protocol = _Protocol(key, on_messages, max_message)
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(
                lambda: protocol, parts.hostname, port,
                ssl=(ssl_context or ssl.create_default_context()) if secure else None,
                server_hostname=parts.hostname if secure else None)
            name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # an IPv6 address
            host = name if port == (443 if secure else 80) else f"{name}:{port}"
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            transport.write(
                f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
                "User-Agent: orderflow\r\n\r\n".encode())
            try:
                await protocol.opened
            except BaseException:
                transport.close()
                raise
        return cls(protocol, close_timeout)

    @property
    def closed(self) -> bool:
        return self._p.closed.done()

    @property
    def close_code(self) -> int | None:
        return self._p.close_code

    @property
    def close_reason(self) -> str:
        return self._p.close_reason

    async def wait_ended(self) -> None:
        """Until the connection ends (:attr:`close_code` and :attr:`close_reason` say how) or :meth:`interrupt`."""
        await asyncio.shield(self._p.ended)

    def interrupt(self) -> None:
        """Stop handing messages over and release :meth:`wait_ended` (the consumer then closes the connection)."""
        self._p.stopped = True
        self._p._end()

    async def send_str(self, text: str) -> None:
        self._p.send_frame(TEXT, text.encode())

    async def close(self, code: int = NORMAL) -> None:
        """Send a close frame, wait up to ``close_timeout`` for the peer's, then drop the connection."""
        p = self._p
        if p.transport is None:
            return
        if p.close_code is None:
            p.close_code, p.close_reason = code, "closed by us"
        p.stopped = True
        p._end()
        p._send_close(code)
        try:
            async with asyncio.timeout(self.close_timeout):
                await asyncio.shield(p.closed)
        except TimeoutError:
            pass
        finally:
            if not p.closed.done():
                p.transport.abort()  # the peer did not answer the close handshake in time: cut it off


def _frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
    mask = os.urandom(4)
    return head + mask + _masked(payload, mask)


def _masked(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    pad = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(pad, "big")).to_bytes(n, "big")


