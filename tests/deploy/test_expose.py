"""docker/expose.py, the container launcher: a service bound to 127.0.0.1 becomes reachable on the machine's own
address at the same port, its exit code is the launcher's, and --probe reports what the service answers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

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
        import expose  # type: ignore[import-not-found]
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
