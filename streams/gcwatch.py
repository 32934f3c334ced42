"""Python's garbage-collector pauses as a Prometheus histogram of a worker's registry.

A collection stops the whole process: a full (generation 2) one walks every tracked object, and a record that
arrives meanwhile waits it out. ``orderflow_<worker>_gc_pause_seconds{generation}`` shows how long and how often
(see :func:`streams.config.freeze_heap`, which keeps the full collections short). One per worker process: the
callback stays installed until :meth:`GcPauses.close`.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

# seconds: from 100 µs to 1 s
PAUSE_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)


class GcPauses:
    """Observes every collection's duration, by generation, from ``gc.callbacks``."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        self.histogram = Histogram(f"{namespace}_gc_pause_seconds", "Python garbage-collector pauses of the worker "
                                   "process, by generation (2: full collections)", ["generation"],
                                   registry=registry, buckets=PAUSE_BUCKETS)
        self._by_generation = [self.histogram.labels(str(g)) for g in range(3)]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)

    def close(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
