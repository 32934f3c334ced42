"""The topic catalog and the ORDERFLOW_* settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from topics import catalog, codec
from topics.errors import SettingsError
from topics.settings import load

pytestmark = pytest.mark.unit


def test_catalog_names_are_unique_and_values_are_record_types() -> None:
    names = [spec.name for spec in catalog.CATALOG]
    assert len(names) == len(set(names))
    for spec in catalog.CATALOG:
        assert spec.value in codec.RECORD_TYPES, spec.name
        assert spec.partitions >= 1


def test_topic_config_carries_cleanup_and_retention() -> None:
    cfg = catalog.topic("book.mbp10").config()
    assert cfg["cleanup.policy"] == "compact,delete"
    assert int(cfg["retention.ms"]) == 2 * catalog.DAY_MS
    with pytest.raises(KeyError, match="unknown topic 'nope'"):
        catalog.topic("nope")


def test_settings_read_the_environment() -> None:
    s = load({"ORDERFLOW_KAFKA_PORT": "19092", "ORDERFLOW_HOME": "/tmp/of", "ORDERFLOW_FRAME_LINGER_MS": "2.5"})
    assert s.kafka_port == 19092
    assert s.bootstrap_servers == "127.0.0.1:19092"
    assert s.home == Path("/tmp/of")
    assert s.frame_linger_ms == 2.5
    assert load({}).bind_host == "127.0.0.1"
    assert load({"ORDERFLOW_BIND_HOST": "0.0.0.0"}).bind_host == "0.0.0.0"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ORDERFLOW_KAFKA_PORT": "abc"}, "ORDERFLOW_KAFKA_PORT='abc': expected int"),
        ({"ORDERFLOW_PG_PORT": "70000"}, "ORDERFLOW_PG_PORT=70000: expected an integer in"),
        ({"ORDERFLOW_CROSSED_POLICY": "ignore"}, "expected one of keep, match, drop-stale"),
        ({"ORDERFLOW_LOG_FORMAT": "xml"}, "ORDERFLOW_LOG_FORMAT='xml'"),
        ({"ORDERFLOW_PG_TIMESCALEDB": "on"}, "ORDERFLOW_PG_TIMESCALEDB='on': expected one of auto, off"),
        ({"ORDERFLOW_BIND_HOST": "everywhere"}, "ORDERFLOW_BIND_HOST='everywhere': expected an IP address"),
        ({"ORDERFLOW_STREAMS_BATCH_MAX": "0"}, "ORDERFLOW_STREAMS_BATCH_MAX=0: expected an integer in [1, 100000]"),
        ({"ORDERFLOW_STREAMS_RECOVERY_STALL_MS": "0"}, "ORDERFLOW_STREAMS_RECOVERY_STALL_MS=0.0: must be positive"),
        ({"ORDERFLOW_STREAMS_INTAKE": "kafka"}, "ORDERFLOW_STREAMS_INTAKE='kafka': expected one of librdkafka, faust"),
        ({"ORDERFLOW_FEATURES_INTAKE": "both"}, "ORDERFLOW_FEATURES_INTAKE='both': expected one of librdkafka, faust"),
        ({"ORDERFLOW_STREAMS_SWITCH_INTERVAL_US": "10"},
         "ORDERFLOW_STREAMS_SWITCH_INTERVAL_US=10: expected an integer in [50, 1000000]"),
    ],
)
def test_bad_settings_fail_loudly_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load(env)


def test_settings_are_frozen() -> None:
    s = load({})
    with pytest.raises(AttributeError):
        s.kafka_port = 1  # type: ignore[misc]
