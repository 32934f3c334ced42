"""ops/prometheus/alerts.yml: each alert fires for its condition and stays quiet otherwise (promtool's rule unit
tests), and every metric the rules read is one the services really export."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from producers.exchanges.metrics import IngestCollector
from producers.exchanges.publisher import LatencyHistogram
from producers.exchanges.queue import DropQueue
from producers.metrics import ProducerMetrics
from sinks.metrics import SinkMetrics
from streams.keeper import Keeper, KeeperConfig
from streams.metrics import Metrics
from tests.deploy.references import REPO

pytestmark = pytest.mark.unit

PROMETHEUS = REPO / "ops" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "tests" / "alerts_test.yml"
REQUIRED = {"OrderflowServiceDown", "OrderflowConsumerLagGrowing", "OrderflowSinkBehind", "OrderflowMboFeedSilent",
            "OrderflowExchangeFeedSilent", "OrderflowBookAnomalies", "OrderflowDeadLetters"}


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (ops/bootstrap.sh installs Debian's prometheus package when apt has it)")
    return binary


def alert_rules() -> list[dict[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def exported_metric_names() -> set[str]:
    """Sample names in the /metrics output of the worker, the sink, a producer and ingest."""
    text = SinkMetrics().render().decode()
    text += generate_latest(ProducerMetrics("simulate", "mbo.frames").registry).decode()
    worker = Metrics()
    worker.watch(Keeper(KeeperConfig()), lag=lambda: {0: 0}, ready=lambda: True)
    text += worker.render().decode()
    ingest = CollectorRegistry()
    ingest.register(IngestCollector([], DropQueue(10, "drop-oldest", on_drop=lambda record: None), LatencyHistogram()))
    text += generate_latest(ingest).decode()
    return set(re.findall(r"^# TYPE (\w+) ", text, re.M))


def test_rule_file_is_valid() -> None:
    out = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)

    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_fires_for_its_condition_and_stays_quiet_otherwise() -> None:
    out = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                         timeout=120, cwd=RULE_TESTS.parent)

    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_firing_case_in_the_rule_tests() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    quiet = {case["alertname"] for test in tests for case in test["alert_rule_test"] if not case["exp_alerts"]}
    names = {rule["alert"] for rule in alert_rules()}

    assert names >= REQUIRED
    assert fired == names
    assert quiet == names


def test_alerts_read_only_metrics_the_services_export() -> None:
    exported = exported_metric_names() | {"up"}
    used = set()
    for rule in alert_rules():
        used |= set(re.findall(r"\borderflow_\w+|\bup(?=\{)", rule["expr"]))

    assert len(used) >= 12
    assert used <= exported, f"not exported by any service: {sorted(used - exported)}"


def test_the_scrape_configs_load_the_rules() -> None:
    local = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    compose = yaml.safe_load((REPO / "docker" / "prometheus.yml").read_text())

    assert [Path(PROMETHEUS / f).resolve() for f in local["rule_files"]] == [ALERTS]
    assert compose["rule_files"] == ["/etc/prometheus/alerts.yml"]
    mounts = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())["services"]["prometheus"]["volumes"]
    assert "../ops/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
