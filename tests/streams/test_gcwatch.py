"""GcPauses observes every garbage collection of the process by generation, and stops when closed."""

from __future__ import annotations

import gc

import pytest
from prometheus_client import CollectorRegistry

from streams.gcwatch import GcPauses

pytestmark = pytest.mark.unit


def count(registry: CollectorRegistry, generation: str) -> float:
    value = registry.get_sample_value("orderflow_test_gc_pause_seconds_count", {"generation": generation})
    return value or 0.0


def test_a_full_collection_is_observed_under_generation_2_until_closed() -> None:
    # Arrange
    registry = CollectorRegistry()
    pauses = GcPauses(registry, "orderflow_test")

    # Act
    try:
        gc.collect()
        gc.collect(0)
        during = count(registry, "2"), count(registry, "0")
    finally:
        pauses.close()
    gc.collect()

    # Assert
    assert during[0] >= 1 and during[1] >= 1
    assert count(registry, "2") == during[0]  # closed: no longer observed
    assert pauses._callback not in gc.callbacks
