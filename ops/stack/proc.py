"""Process and port helpers: PID files checked against /proc, polite termination, free-port checks, tails."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ops.stack.errors import PortInUseError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Port:
    """A port the stack listens on, with the setting that chooses it (for the error message)."""

    service: str
    host: str
    port: int
    env: str


def port_in_use(host: str, port: int) -> bool:
    """True if something listens on (or holds) ``host:port``; binding is the test, as a server would do."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def require_free(ports: Iterable[Port]) -> None:
    """Raise :class:`PortInUseError` naming the first port that another process already holds."""
    for p in ports:
        if port_in_use(p.host, p.port):
            raise PortInUseError(
                f"cannot start {p.service}: port {p.host}:{p.port} is already in use by another process",
                f"stop that process (see `ss -ltnp 'sport = :{p.port}'`) or choose another port, "
                f"e.g. {p.env}={p.port + 1}",
            )


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Poll until something accepts connections on ``host:port``; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.1)
    return False


def read_pid(path: Path) -> int | None:
    """The PID stored in the first line of ``path``, or None if the file is missing or holds no number."""
    try:
        first = path.read_text().splitlines()[0].strip()
        return int(first)
    except (OSError, IndexError, ValueError):
        return None


def cmdline(pid: int) -> list[str] | None:
    """The command line of a living process, or None if it does not exist or is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return None
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_ours(pid: int | None, *needles: str) -> bool:
    """True if ``pid`` is alive and its command line contains every one of ``needles``."""
    if pid is None or pid <= 0:
        return False
    args = cmdline(pid)
    if args is None:
        return False
    joined = "\0".join(args)
    return all(needle in joined for needle in needles)


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child (it would otherwise stay a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` no longer runs; True if it is gone."""
    deadline = time.monotonic() + timeout
    while True:
        _reap(pid)
        if cmdline(pid) is None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def terminate(pid: int, timeout: float = 30.0) -> bool:
    """SIGTERM, wait up to ``timeout``, then SIGKILL. True if it stopped politely, False if it was killed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, timeout):
        return True
    logger.warning("process %d ignored SIGTERM for %.0f s; killing it", pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_gone(pid, 10.0)
    return False


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist), read backwards in blocks."""
    if lines <= 0:
        return ""
    try:
        with path.open("rb") as f:
            end = f.seek(0, os.SEEK_END)
            start, data = end, b""
            while start > 0 and data.count(b"\n") <= lines:
                start = max(0, start - 65536)
                f.seek(start)
                data = f.read(end - start)
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
