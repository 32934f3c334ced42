"""The WebSocket client against real peers on loopback: an aiohttp server for the ordinary exchange, and a raw TCP
server that writes hand-made frames for what a library server will not do (fragments, masked frames, split
reads, silence after a close)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from aiohttp import WSMsgType, web

from producers.exchanges.websocket import GUID, WebSocket, WebSocketError

pytestmark = pytest.mark.unit

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = False) -> bytes:
    """A server frame, built by hand."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    return head + (b"\0\0\0\0" + payload if masked else payload)


async def read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One masked client frame: (opcode, unmasked payload)."""
    b0, b1 = await reader.readexactly(2)
    assert b1 & 0x80, "client frames must be masked"
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4)
    data = await reader.readexactly(n)
    return b0 & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def raw_server(script: Script, status: str = "101 Switching Protocols",
                     accept: str | None = None) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readuntil(b"\r\n\r\n")).decode()
        key = next(line.split(":", 1)[1].strip() for line in request.split("\r\n")
                   if line.lower().startswith("sec-websocket-key:"))
        good = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        writer.write(f"HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Accept: {accept or good}\r\n\r\n".encode())
        await writer.drain()
        try:
            await script(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"ws://127.0.0.1:{port}/ws?x=1"


async def receive_all(url: str, **options: Any) -> tuple[list[bytes], WebSocket]:
    """Every message until the connection ends, and the socket."""
    got: list[bytes] = []
    ws = await WebSocket.connect(url, lambda messages, ts_recv: got.extend(messages), **options)
    await ws.wait_ended()
    await ws.close()
    return got, ws


def received_from(script: Script, **options: Any) -> tuple[list[bytes], WebSocket]:
    """Every message a raw server running ``script`` sent until the connection ended, and the socket."""
    async def main() -> tuple[list[bytes], WebSocket]:
        server, url = await raw_server(script)
        async with server:
            return await receive_all(url, **options)

    return cast(tuple[list[bytes], WebSocket], run(main()))


def resolve_once(future: asyncio.Future[list[bytes]]) -> Callable[[list[bytes], int], None]:
    """A message handler that hands the first read's messages to ``future``."""
    def on_messages(messages: list[bytes], ts_recv: int) -> None:
        if not future.done():
            future.set_result(messages)

    return on_messages


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_messages_of_every_length_class_arrive_whole_and_in_order_even_split_across_reads() -> None:
    sizes = [0, 1, 125, 126, 65_535, 65_536, 300_000]
    payloads = [bytes([65 + i]) * n for i, n in enumerate(sizes)]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        wire = b"".join(frame(0x1, p) for p in payloads) + frame(0x8, struct.pack("!H", 1000))
        for i in range(0, len(wire), 7_777):  # reads that end anywhere inside a header or a payload
            writer.write(wire[i:i + 7_777])
            await writer.drain()
            await asyncio.sleep(0.001)
        await read_client_frame(reader)

    got, ws = received_from(script)

    assert got == payloads
    assert ws.close_code == 1000


def test_a_fragmented_message_is_joined_and_a_ping_between_fragments_is_answered_with_its_payload() -> None:
    answered: list[tuple[int, bytes]] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frame(0x1, b'{"a":', fin=False) + frame(0x9, b"are you there")
                     + frame(0x0, b'1,"b"', fin=False) + frame(0x0, b":2}") + frame(0x2, b"next"))
        answered.append(await read_client_frame(reader))
        writer.write(frame(0x8, struct.pack("!H", 1001) + b"going away"))
        answered.append(await read_client_frame(reader))

    got, ws = received_from(script)

    assert got == [b'{"a":1,"b":2}', b"next"]
    assert answered[0] == (0xA, b"are you there")  # pong, same payload
    assert answered[1][0] == 0x8 and answered[1][1][:2] == struct.pack("!H", 1001)  # our close answers theirs
    assert (ws.close_code, ws.close_reason) == (1001, "going away")


@pytest.mark.parametrize(("wire", "code", "reason"), [
    (frame(0x1, b"hi", masked=True), 1002, "masked frame from the server"),
    (bytes([0xC1, 0x02]) + b"hi", 1002, "reserved bits set"),
    (frame(0x0, b"orphan"), 1002, "continuation frame without a message"),
    (frame(0x3, b""), 1002, "unknown opcode 0x3"),
])
def test_a_protocol_violation_closes_with_the_rfc_code_and_a_reason(wire: bytes, code: int, reason: str) -> None:
    closes: list[tuple[int, bytes]] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frame(0x1, b"good") + wire + frame(0x1, b"never delivered"))
        closes.append(await read_client_frame(reader))

    got, ws = received_from(script)

    assert got == [b"good"]
    assert ws.close_code == code and reason in ws.close_reason
    assert closes[0][0] == 0x8 and closes[0][1][:2] == struct.pack("!H", code)


def test_a_message_over_the_limit_closes_with_1009() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frame(0x1, b"x" * 2_000))
        await read_client_frame(reader)

    _, ws = received_from(script, max_message=1_000)

    assert ws.close_code == 1009 and "over the 1000-byte limit" in ws.close_reason


@pytest.mark.parametrize(("status", "accept", "error"), [
    ("403 Forbidden", None, "handshake refused: 'HTTP/1.1 403 Forbidden'"),
    ("101 Switching Protocols", "bm90IHRoZSBrZXk=", "Sec-WebSocket-Accept does not match"),
])
def test_a_refused_or_wrong_handshake_is_an_error_naming_it(status: str, accept: str | None, error: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        server, url = await raw_server(script, status=status, accept=accept)
        async with server:
            await WebSocket.connect(url, lambda messages, ts_recv: None)

    with pytest.raises(WebSocketError, match=error):
        run(main())


def test_close_gives_up_on_a_peer_that_never_answers_after_the_timeout() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # reads our close frame and goes on sending, never closing
            writer.write(frame(0x1, b"tick"))
            await writer.drain()
            await asyncio.sleep(0.01)

    async def main() -> float:
        server, url = await raw_server(script)
        async with server:
            first: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
            ws = await WebSocket.connect(url, resolve_once(first), close_timeout=0.5)
            await first
            loop = asyncio.get_running_loop()
            started = loop.time()
            await ws.close()
            return loop.time() - started

    took = run(main())

    assert 0.4 < took < 2.0


def message(i: int) -> str:
    return f'{{"n":{i},"pad":"{"x" * 200}"}}'


async def aiohttp_server(count: int, received: list[str]) -> tuple[web.AppRunner, str]:
    """A server that answers the first text with ``count`` messages."""
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                received.append(msg.data)
                for i in range(count):
                    await ws.send_str(message(i))
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"ws://127.0.0.1:{port}/ws"


def test_text_sent_reaches_an_aiohttp_server_and_each_read_is_handed_over_whole_with_one_receipt_time() -> None:
    received: list[str] = []
    reads: list[tuple[int, list[bytes]]] = []

    async def main() -> tuple[int, int]:
        runner, url = await aiohttp_server(5_000, received)
        try:
            before = time.time_ns()
            ws = await WebSocket.connect(url, lambda messages, ts_recv: reads.append((ts_recv, messages)))
            await ws.send_str('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
            while sum(len(m) for _, m in reads) < 5_000:
                await asyncio.sleep(0.01)
            await ws.close()
            return before, time.time_ns()
        finally:
            await runner.cleanup()

    before, after = run(main())

    assert received == ['{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}']
    assert [m for _, read in reads for m in read] == [message(i).encode() for i in range(5_000)]
    assert len(reads) < 5_000  # reads of several messages were handed over at once
    assert all(before <= ts <= after for ts, _ in reads)
    assert [ts for ts, _ in reads] == sorted(ts for ts, _ in reads)


def test_a_handler_that_fails_ends_the_connection_with_1011_naming_the_error() -> None:
    def handler(messages: list[bytes], ts_recv: int) -> None:
        raise KeyError("boom")

    async def main() -> WebSocket:
        runner, url = await aiohttp_server(10, [])
        try:
            ws = await WebSocket.connect(url, handler)
            await ws.send_str("go")
            await ws.wait_ended()
            await ws.close()
            return ws
        finally:
            await runner.cleanup()

    ws = run(main())

    assert ws.close_code == 1011 and "message handler failed: KeyError('boom')" in ws.close_reason


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_handshake_names_the_host_and_path_asked_for(host: str) -> None:
    requests: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readuntil(b"\r\n\r\n")).decode()
        requests.append(request)
        writer.close()

    async def main() -> None:
        try:
            server = await asyncio.start_server(handle, host, 0)
        except OSError:
            pytest.skip(f"no {host} on this machine")
        port = server.sockets[0].getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        async with server:
            with pytest.raises(WebSocketError):
                await WebSocket.connect(f"ws://{shown}:{port}/stream?streams=a@trade", lambda m, t: None)
        assert f"GET /stream?streams=a@trade HTTP/1.1\r\nHost: {shown}:{port}\r\n" in requests[0]

    run(main())


def test_our_close_ends_as_soon_as_the_peer_answers_it() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frame(0x1, b"hello"))
        opcode, payload = await read_client_frame(reader)
        assert opcode == 0x8
        writer.write(frame(0x8, payload))  # the answer; the TCP connection is left to the client to close
        await writer.drain()
        await asyncio.sleep(10)

    async def main() -> tuple[float, WebSocket]:
        server, url = await raw_server(script)
        async with server:
            got: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
            ws = await WebSocket.connect(url, resolve_once(got), close_timeout=5.0)
            await got
            loop = asyncio.get_running_loop()
            started = loop.time()
            await ws.close()
            return loop.time() - started, ws

    took, ws = run(main())

    assert took < 1.0
    assert ws.closed and (ws.close_code, ws.close_reason) == (1000, "closed by us")
