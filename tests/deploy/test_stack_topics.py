"""`orderflow stack topics`, which the compose file and the Kubernetes init containers run: against a real broker
it leaves every catalog topic in place with the catalog's partition count."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient

from topics.catalog import CATALOG

pytestmark = pytest.mark.integration


def test_stack_topics_ensures_every_catalog_topic_on_the_named_broker(kafka_bootstrap: str) -> None:
    env = {**os.environ, "ORDERFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap, "ORDERFLOW_TOPIC_PARTITIONS": ""}

    out = subprocess.run([sys.executable, "-m", "streams.cli", "stack", "topics"], env=env, capture_output=True,
                         text=True, timeout=120)

    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{kafka_bootstrap}: created ")
    listed = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=30).topics
    for spec in CATALOG:
        assert spec.name in out.stdout
        assert len(listed[spec.name].partitions) == spec.partitions


def test_stack_topics_names_an_unreachable_broker() -> None:
    env = {**os.environ, "ORDERFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:1"}

    out = subprocess.run([sys.executable, "-m", "streams.cli", "stack", "topics"], env=env, capture_output=True,
                         text=True, timeout=120)

    assert out.returncode == 1
    assert "cannot reach the Kafka broker at 127.0.0.1:1" in out.stderr
    assert "ORDERFLOW_KAFKA_BOOTSTRAP" in out.stderr
