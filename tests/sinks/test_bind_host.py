"""ORDERFLOW_BIND_HOST: the services' HTTP servers listen on loopback by default, on every address when asked
(containers, where the port is published from the container's own address)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from sinks.metrics import HealthServer, SinkMetrics

pytestmark = pytest.mark.integration


def outside_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.parametrize(("host", "from_outside"), [("127.0.0.1", False), ("0.0.0.0", True)])
def test_the_health_server_listens_on_the_configured_address(host: str, from_outside: bool) -> None:
    # Arrange
    address = outside_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    server = HealthServer(SinkMetrics(), lambda: {"status": "ok"}, host=host, port=0).start()
    try:
        # Act
        inside = reachable(f"http://127.0.0.1:{server.port}/health")
        outside = reachable(f"http://{address}:{server.port}/health")
    finally:
        server.stop()
    # Assert
    assert inside
    assert outside is from_outside
