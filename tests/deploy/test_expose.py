"""docker/expose.py, the container launcher: a service bound to 127.0.0.1 becomes reachable on the machine's own
address at the same port, its exit code is the launcher's, and --probe reports what the service answers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.deploy.references import REPO

pytestmark = pytest.mark.unit

LAUNCHER = REPO / "docker" / "expose.py"
SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path == "/health" else 503
        self.send_response(code); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def own_address() -> str:
    sys.path.insert(0, str(LAUNCHER.parent))
    try:
        import expose
    finally:
        sys.path.pop(0)
    addresses = expose.container_addresses()
    if not addresses:
        pytest.skip("this machine has no non-loopback IPv4 address to publish on")
    return str(addresses[0])


def probe(url: str) -> int:
    return subprocess.run([sys.executable, str(LAUNCHER), "--probe", url], capture_output=True, timeout=30).returncode


def wait_for(url: str, timeout: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bytes(response.read())
        except OSError:
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.1)


def test_a_loopback_service_is_reachable_on_the_own_address_and_probes_see_its_state() -> None:
    address, port = own_address(), free_port()
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), str(port), "--", sys.executable, "-c", SERVER, str(port)])
    try:
        body = wait_for(f"http://{address}:{port}/health")

        assert body == b"ok"
        assert probe(f"http://{address}:{port}/health") == 0
        assert probe(f"http://127.0.0.1:{port}/other") == 1  # a 503 is unhealthy
        assert probe(f"tcp://{address}:{port}") == 0
    finally:
        proc.terminate()
        code = proc.wait(30)
    assert code == 128 + 15  # the launcher passed SIGTERM to the service and reports how it ended


def test_a_relayed_connection_is_refused_when_the_service_does_not_listen() -> None:
    address, port = own_address(), free_port()
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), str(port), "--", sys.executable, "-c",
                             "import time; time.sleep(60)"])
    try:
        time.sleep(1.0)

        assert probe(f"http://{address}:{port}/health") == 1
        assert probe(f"tcp://127.0.0.1:{port}") == 1
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_launcher_exits_with_the_command_exit_code() -> None:
    result = subprocess.run([sys.executable, str(LAUNCHER), str(free_port()), "--", sys.executable, "-c",
                             "raise SystemExit(7)"], timeout=30)

    assert result.returncode == 7


def test_a_malformed_port_list_is_refused_with_its_value() -> None:
    result = subprocess.run([sys.executable, str(LAUNCHER), "80,http", "--", "true"], capture_output=True, text=True,
                            timeout=30)

    assert result.returncode == 2
    assert "'http'" in result.stderr


@pytest.fixture
def netns() -> Iterator[tuple[str, str]]:
    """A network namespace joined to this one by a veth pair, like a container: (namespace name, its address)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    name, slot = f"oftest{os.getpid()}", (os.getpid() % 60) * 4
    host, inner = f"198.51.100.{slot + 1}", f"198.51.100.{slot + 2}"
    setup = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", f"{name}h", "type", "veth", "peer", "name", f"{name}n"],
        ["ip", "link", "set", f"{name}n", "netns", name],
        ["ip", "addr", "add", f"{host}/30", "dev", f"{name}h"],
        ["ip", "link", "set", f"{name}h", "up"],
        ["ip", "-n", name, "addr", "add", f"{inner}/30", "dev", f"{name}n"],
        ["ip", "-n", name, "link", "set", f"{name}n", "up"],
        ["ip", "-n", name, "link", "set", "lo", "up"],
    ]
    try:
        for argv in setup:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if done.returncode != 0:
                pytest.skip(f"cannot set up a network namespace here: {' '.join(argv)}: {done.stderr.strip()}")
        yield name, inner
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", f"{name}h"], capture_output=True, timeout=30)


def in_netns(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ip", "netns", "exec", name, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.integration
def test_in_a_container_network_a_loopback_service_is_reachable_only_through_the_launcher(
        netns: tuple[str, str]) -> None:
    name, address = netns
    bare_port, launched_port = free_port(), free_port()
    bare = in_netns(name, [sys.executable, "-c", SERVER, str(bare_port)])
    launched = in_netns(name, [sys.executable, str(LAUNCHER), str(launched_port), "--", sys.executable, "-c", SERVER,
                               str(launched_port)])
    try:
        body = wait_for(f"http://{address}:{launched_port}/health")

        assert body == b"ok"
        inside = subprocess.run(["ip", "netns", "exec", name, sys.executable, str(LAUNCHER), "--probe",
                                 f"http://127.0.0.1:{bare_port}/health"], capture_output=True, timeout=30)
        assert inside.returncode == 0  # the bare service listens, on the namespace's own loopback...
        assert probe(f"tcp://{address}:{bare_port}") == 1  # ...which nothing outside reaches
    finally:
        for proc in (bare, launched):
            proc.terminate()
            proc.wait(30)
