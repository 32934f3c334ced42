"""The workers' configurations take their own intake setting and the intake's fetch size, and a worker process
gets the GIL switch interval it is configured with."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace

import pytest

from streams.app import output_sink
from streams.config import WorkerConfig, prepare_process
from streams.features_app import FeaturesConfig
from streams.intake import Intake
from streams.output import ConfluentSink
from streams.transport import BookApp
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


def test_the_intake_fetch_returns_on_the_first_byte_or_after_100_ms_by_default() -> None:
    book = WorkerConfig.from_settings(load({}))

    config = Intake.settings("127.0.0.1:9092", "app", book.intake_wait_ms, book.intake_min_bytes)

    assert (config["fetch.wait.max.ms"], config["fetch.min.bytes"]) == (100, 1)
    assert book.fetch_wait_ms == 10  # Faust's own consumer keeps its wait


def test_the_streams_defaults_of_the_intake_fetch_are_the_settings_defaults() -> None:
    settings = load({})
    expected = (settings.streams_intake_wait_ms, settings.streams_intake_min_bytes)

    config = Intake.settings("127.0.0.1:9092", "app")

    assert (config["fetch.wait.max.ms"], config["fetch.min.bytes"]) == expected
    assert BookApp.intake_fetch == expected


def test_the_intake_fetch_is_a_setting_of_both_workers() -> None:
    settings = load({"ORDERFLOW_STREAMS_INTAKE_WAIT_MS": "5", "ORDERFLOW_STREAMS_INTAKE_MIN_BYTES": "65536"})

    book, features = WorkerConfig.from_settings(settings), FeaturesConfig.from_settings(settings)

    assert (book.intake_wait_ms, book.intake_min_bytes) == (5, 65536)
    assert (features.intake_wait_ms, features.intake_min_bytes) == (5, 65536)


def test_the_output_linger_is_a_setting_of_both_workers_and_reaches_their_producer() -> None:
    settings = load({"ORDERFLOW_STREAMS_OUTPUT_LINGER_MS": "0.25"})

    book, features = WorkerConfig.from_settings(settings), FeaturesConfig.from_settings(settings)
    sink = output_sink(book, app=None)  # type: ignore[arg-type]  # the librdkafka sink needs no app

    assert (book.output_linger_ms, features.output_linger_ms) == (0.25, 0.25)
    assert WorkerConfig.from_settings(load({})).output_linger_ms == 0.0  # outputs leave at once by default
    assert isinstance(sink, ConfluentSink) and sink.linger_ms == 0.25


def test_a_negative_output_linger_is_refused() -> None:
    with pytest.raises(SettingsError, match="ORDERFLOW_STREAMS_OUTPUT_LINGER_MS=-1"):
        load({"ORDERFLOW_STREAMS_OUTPUT_LINGER_MS": "-1"})


def test_a_fetch_size_of_zero_is_refused() -> None:
    with pytest.raises(SettingsError, match="ORDERFLOW_STREAMS_INTAKE_MIN_BYTES=0"):
        load({"ORDERFLOW_STREAMS_INTAKE_MIN_BYTES": "0"})


def test_freeze_heap_freezes_the_process_heap_once() -> None:
    # Arrange: a fresh interpreter (freezing this test process's heap would outlive the test)
    script = (
        "import gc\n"
        "from streams.config import freeze_heap\n"
        "assert gc.get_freeze_count() == 0\n"
        "freeze_heap()\n"
        "first = gc.get_freeze_count()\n"
        "keep = [[] for _ in range(1000)]\n"
        "freeze_heap()\n"
        "print(first, gc.get_freeze_count())\n"
    )

    # Act
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)

    # Assert: objects alive at the first call are frozen; a second call freezes nothing more
    first, second = map(int, done.stdout.split())
    assert first > 1000
    assert second == first
