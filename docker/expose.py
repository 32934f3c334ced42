"""Container launcher: run an orderflow command and publish its loopback-only ports on the container's addresses.

The services bind their HTTP and WebSocket servers to 127.0.0.1 (worker views, sink and ingest metrics, replay
control, the fake exchange). In a container, loopback belongs to the container alone: Prometheus, Kubernetes probes,
other containers and published ports reach nothing there. This launcher starts the command and, for each PORT,
listens on every non-loopback IPv4 address of the container at that same port, relaying each connection to
127.0.0.1:PORT. A relayed connection is refused when the service does not listen, so probes see the service's state.

    python expose.py PORT[,PORT...] -- COMMAND [ARG...]   run COMMAND; exit with its exit code
    python expose.py --probe URL                          exit 0 when URL answers 2xx within 3 s (health checks)
    python expose.py --probe tcp://HOST:PORT              exit 0 when HOST:PORT accepts a connection

Standard library only: it runs in the image's Python before anything else is imported.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import signal
import socket
import struct
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

logger = logging.getLogger("orderflow.expose")

SIOCGIFADDR = 0x8915
CHUNK = 65536
PROBE_TIMEOUT_S = 3.0


def container_addresses() -> list[str]:
    """The IPv4 addresses of this network namespace's interfaces, loopback excluded."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:  # an interface without an IPv4 address
                continue
            address = socket.inet_ntoa(packed[20:24])
            if not address.startswith("127.") and address not in found:
                found.append(address)
    return found


def parse_ports(text: str) -> list[int]:
    ports: list[int] = []
    for item in text.split(","):
        if not item.strip().isdigit() or not 1 <= int(item) <= 65535:
            raise ValueError(f"expose: port {item!r} in {text!r} is not a TCP port (1-65535)")
        ports.append(int(item))
    return ports


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _relay(port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        writer.close()  # the service does not listen: the caller sees a closed connection
        return
    try:
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    finally:
        up_writer.close()
        writer.close()


async def _serve(ports: Sequence[int], argv: Sequence[str]) -> int:
    proc = await asyncio.create_subprocess_exec(*argv)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, proc.send_signal, sig)
    servers = []
    for address in container_addresses():
        for port in ports:
            servers.append(await asyncio.start_server(functools.partial(_relay, port), address, port))
            logger.info("expose: %s:%d -> 127.0.0.1:%d", address, port, port)
    try:
        code = await proc.wait()
        return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell reports it
    finally:
        for server in servers:
            server.close()


def probe(url: str) -> int:
    """0 when ``url`` answers with a 2xx status (``tcp://``: accepts a connection), 1 otherwise (reason on stderr)."""
    parts = urllib.parse.urlsplit(url)
    try:
        if parts.scheme == "tcp":
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), PROBE_TIMEOUT_S):
                return 0
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError) as e:
        print(f"probe {url}: {e}", file=sys.stderr)
        return 1


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(argv) == 2 and argv[0] == "--probe":
        return probe(argv[1])
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    try:
        ports = parse_ports(argv[0])
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    return asyncio.run(_serve(ports, argv[2:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
