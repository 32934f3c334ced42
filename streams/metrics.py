"""Prometheus metrics of a book worker, in a registry of its own, rendered by the ``/metrics`` view.

Counters that the hot path already keeps (:class:`~streams.keeper.Tally`) are read at scrape time by a custom
collector, so processing a frame costs a few histogram observations and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.keeper import Keeper

NS = "orderflow_book"
# seconds; latency buckets from 100 µs to 10 s
LATENCY_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
APPLY_BUCKETS = (1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0)


class KeeperCollector(Collector):
    """Counters and gauges read from the keeper (and the consumer's lag) when Prometheus scrapes."""

    def __init__(self, keeper: Keeper, lag: Callable[[], Mapping[int, int]], ready: Callable[[], bool]) -> None:
        self.keeper = keeper
        self.lag = lag
        self.ready = ready

    def collect(self) -> Iterator[Metric]:
        tally = self.keeper.tally
        yield _counter("records_applied", "MBO records applied to books", tally.records)
        yield _counter("frames", "MBO frames applied to books", tally.frames)
        yield _counter("frames_skipped", "re-delivered frames skipped because a checkpoint covered them",
                       tally.skipped_frames)
        yield _counter("dead_letters", "frames sent to the dead-letter topic", tally.dead_letters)
        anomalies = CounterMetricFamily(f"{NS}_anomalies", "book anomalies by kind (occurrences)", labels=["kind"])
        for kind, count in sorted(tally.anomalies.items()):
            anomalies.add_metric([kind], count)
        yield anomalies
        outputs = CounterMetricFamily(f"{NS}_outputs", "messages published by topic", labels=["topic"])
        for topic, count in sorted(tally.outputs.items()):
            outputs.add_metric([topic], count)
        yield outputs
        lag = GaugeMetricFamily(f"{NS}_consumer_lag", "frames not yet handled, per partition",
                                labels=["partition"])
        for partition, value in sorted(self.lag().items()):
            lag.add_metric([str(partition)], value)
        yield lag
        yield GaugeMetricFamily(f"{NS}_books", "books held by this worker", value=sum(1 for _ in self.keeper.books()))
        yield GaugeMetricFamily(f"{NS}_partitions", "partitions assigned and restored",
                                value=len(self.keeper.partitions))
        yield GaugeMetricFamily(f"{NS}_ready", "1 once state is restored after the last rebalance",
                                value=1.0 if self.ready() else 0.0)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{NS}_{name}", doc, value=value)


class Metrics:
    """The worker's registry and the histograms observed on the hot path."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.apply_seconds = Histogram(f"{NS}_apply_seconds", "time to decode and apply one frame and build its "
                                       "outputs", registry=reg, buckets=APPLY_BUCKETS)
        self.recv_to_publish = Histogram(
            f"{NS}_recv_to_publish_seconds", "record ts_recv (last of the frame) to its outputs handed to the "
            "producer; meaningful for live data only (replayed history has old ts_recv)",
            registry=reg, buckets=LATENCY_BUCKETS)
        self.sent_to_publish = Histogram(
            f"{NS}_sent_to_publish_seconds", "frame ts_sent (producer wall clock) to its outputs handed to the "
            "producer", registry=reg, buckets=LATENCY_BUCKETS)
        self.checkpoint_seconds = Histogram(
            f"{NS}_checkpoint_seconds", "one partition checkpoint: flush outputs, write and await the changelog",
            registry=reg, buckets=LATENCY_BUCKETS)
        self.checkpoint_bytes = Histogram(
            f"{NS}_checkpoint_bytes", "bytes written by one partition checkpoint", registry=reg,
            buckets=(1e3, 1e4, 1e5, 1e6, 4e6, 16e6, 64e6))

    def watch(self, keeper: Keeper, lag: Callable[[], Mapping[int, int]], ready: Callable[[], bool]) -> None:
        self.registry.register(KeeperCollector(keeper, lag, ready))

    def render(self) -> bytes:
        return generate_latest(self.registry)
