"""A real Prometheus scrapes a running sink, and every sink expression of the pipeline dashboard evaluates."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ops.stack.testing import free_ports
from sinks import samples, tables
from sinks.runner import Sink, SinkConfig
from sinks.store import MemoryStore
from tests.sinks.fakes import FakeConsumer, FakeDeadLetters, as_store
from topics import codec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "dashboards" / "orderflow-pipeline.json"


def query(port: int, expr: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def test_prometheus_scrapes_the_sink_and_the_dashboard_queries_evaluate(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    consumer = FakeConsumer({("bbo-in", 0): [codec.encode(r) for r in samples.bbo_updates(500)]})
    store = MemoryStore()
    sink_port, prom_port = free_ports(2)
    config = SinkConfig(bootstrap_servers="fake", topics={"bbo-in": tables.BBO}, dead_letter_topic="dead",
                        batch_rows=50, batch_ms=10, metrics_port=sink_port)
    sink = Sink(config, as_store(store), consumer=consumer, dead_letters=FakeDeadLetters())
    thread = threading.Thread(target=sink.run)
    thread.start()
    conf = tmp_path / "prometheus.yml"
    conf.write_text(f"global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: orderflow-sink\n"
                    f"    static_configs: [{{targets: ['127.0.0.1:{sink_port}']}}]\n")
    prom = subprocess.Popen([binary, f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                result = query(prom_port, 'orderflow_sink_rows_written_total{table="bbo"}')["data"]["result"]
                if result and float(result[0]["value"][1]) == 500:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus never scraped the sink"
            time.sleep(0.2)
        panels = json.loads(DASHBOARD.read_text())["panels"]
        for panel in panels:
            for target in panel["targets"]:
                answer = query(prom_port, target["expr"])
                assert answer["status"] == "success", (panel["title"], target["expr"], answer)
        assert query(prom_port, "orderflow_sink_paused")["data"]["result"][0]["value"][1] == "0"
    finally:
        prom.terminate()
        prom.wait(30)
        sink.stop()
        thread.join(30)
