"""The workers' configurations take their own intake setting and the intake's fetch size, and a worker process
gets the GIL switch interval it is configured with."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace

import pytest

from streams.config import WorkerConfig, prepare_process
from streams.features_app import FeaturesConfig
from streams.intake import Intake
from topics.errors import SettingsError
from topics.settings import load

pytestmark = pytest.mark.unit


@pytest.fixture
def switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_the_book_worker_reads_its_frames_with_librdkafka_and_the_features_worker_with_faust_by_default() -> None:
    settings = load({})

    book, features = WorkerConfig.from_settings(settings), FeaturesConfig.from_settings(settings)

    assert (book.intake, features.intake) == ("librdkafka", "faust")


def test_each_worker_takes_its_own_intake_setting() -> None:
    settings = load({"ORDERFLOW_STREAMS_INTAKE": "faust", "ORDERFLOW_FEATURES_INTAKE": "librdkafka"})

    book, features = WorkerConfig.from_settings(settings), FeaturesConfig.from_settings(settings)

    assert (book.intake, features.intake) == ("faust", "librdkafka")


def test_prepare_process_sets_the_configured_gil_switch_interval(switch_interval: None) -> None:
    config = replace(WorkerConfig.from_settings(load({"ORDERFLOW_STREAMS_SWITCH_INTERVAL_US": "750"})),
                     loop="asyncio")

    prepare_process(config)

    assert sys.getswitchinterval() == pytest.approx(0.00075)


def test_the_intake_fetch_returns_on_the_first_byte_by_default() -> None:
    book = WorkerConfig.from_settings(load({}))

    config = Intake.settings("127.0.0.1:9092", "app", book.fetch_wait_ms, book.fetch_min_bytes)

    assert (config["fetch.min.bytes"], config["fetch.wait.max.ms"]) == (1, 10)


def test_the_intake_fetch_size_is_a_setting_of_both_workers() -> None:
    settings = load({"ORDERFLOW_STREAMS_FETCH_MIN_BYTES": "1048576"})

    book, features = WorkerConfig.from_settings(settings), FeaturesConfig.from_settings(settings)

    assert (book.fetch_min_bytes, features.fetch_min_bytes) == (1_048_576, 1_048_576)
    assert Intake.settings("b", "a", 10, book.fetch_min_bytes)["fetch.min.bytes"] == 1_048_576


def test_a_fetch_size_of_zero_is_refused() -> None:
    with pytest.raises(SettingsError, match="ORDERFLOW_STREAMS_FETCH_MIN_BYTES=0"):
        load({"ORDERFLOW_STREAMS_FETCH_MIN_BYTES": "0"})
