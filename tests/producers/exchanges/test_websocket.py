"""The WebSocket client against real peers on loopback: an aiohttp server for the ordinary exchange, and a raw TCP
server that writes hand-made frames for what a library server will not do (fragments, masked frames, split
reads, silence after a close)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import Awaitable, Callable
from typing import Any

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


async def receive_all(ws: WebSocket) -> list[bytes]:
    """Every message until the connection ends."""
    out: list[bytes] = []
    while chunks := await ws.receive():
        out += [m for c in chunks for m in c.messages]
    return out


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


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

    async def main() -> tuple[list[bytes], int | None]:
        server, url = await raw_server(script)
        async with server:
            ws = await WebSocket.connect(url)
            got = await receive_all(ws)
            await ws.close()
            return got, ws.close_code

    got, code = run(main())

    assert got == payloads
    assert code == 1000


def test_a_fragmented_message_is_joined_and_a_ping_between_fragments_is_answered_with_its_payload() -> None:
    answered: list[tuple[int, bytes]] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frame(0x1, b'{"a":', fin=False) + frame(0x9, b"are you there")
                     + frame(0x0, b'1,"b"', fin=False) + frame(0x0, b":2}") + frame(0x2, b"next"))
        answered.append(await read_client_frame(reader))
        writer.write(frame(0x8, struct.pack("!H", 1001) + b"going away"))
        answered.append(await read_client_frame(reader))

    async def main() -> tuple[list[bytes], WebSocket]:
        server, url = await raw_server(script)
        async with server:
            ws = await WebSocket.connect(url)
            return await receive_all(ws), ws

    got, ws = run(main())

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

    async def main() -> tuple[list[bytes], WebSocket]:
        server, url = await raw_server(script)
        async with server:
            ws = await WebSocket.connect(url)
            return await receive_all(ws), ws

    got, ws = run(main())

    assert got == [b"good"]
    assert ws.close_code == code and reason in ws.close_reason
    assert closes[0][0] == 0x8 and closes[0][1][:2] == struct.pack("!H", code)


def test_a_message_over_the_limit_closes_with_1009() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frame(0x1, b"x" * 2_000))
        await read_client_frame(reader)

    async def main() -> WebSocket:
        server, url = await raw_server(script)
        async with server:
            ws = await WebSocket.connect(url, max_message=1_000)
            await receive_all(ws)
            return ws

    ws = run(main())

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
            await WebSocket.connect(url)

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
            ws = await WebSocket.connect(url, close_timeout=0.5)
            await ws.receive()
            loop = asyncio.get_running_loop()
            started = loop.time()
            await ws.close()
            return loop.time() - started

    took = run(main())

    assert 0.4 < took < 2.0


def message(i: int) -> str:
    return f'{{"n":{i},"pad":"{"x" * 200}"}}'


def test_text_sent_reaches_an_aiohttp_server_and_reading_pauses_while_messages_wait() -> None:
    received: list[str] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                received.append(msg.data)
                for i in range(5_000):
                    await ws.send_str(message(i))
        return ws

    async def main() -> tuple[list[bytes], int]:
        app = web.Application()
        app.router.add_get("/ws", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            ws = await WebSocket.connect(f"ws://127.0.0.1:{port}/ws", max_pending=50)
            await ws.send_str('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
            await asyncio.sleep(0.5)  # the server sends everything while nobody receives
            waiting = ws._p.pending
            got: list[bytes] = []
            while len(got) < 5_000:
                got += [m for c in await ws.receive() for m in c.messages]
            await ws.close()
            return got, waiting
        finally:
            await runner.cleanup()

    got, waiting = run(main())

    assert received == ['{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}']
    assert got == [message(i).encode() for i in range(5_000)]
    # over max_pending waiting, the socket stopped being read (TCP holds the peer back): at most one more read
    assert 50 < waiting < 2_500
