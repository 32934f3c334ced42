"""The features worker's metrics and web views: ``/features``, ``/features/{instrument}``, ``/regimes``,
``/health``, ``/metrics``. The documents are plain functions of the keeper, tested without a server."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from processors.regime import TREND_STATES, VOL_STATES
from streams.features_group import GroupKeeper

NS = "orderflow_features"
LATENCY_BUCKETS = (1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
COMPUTE_BUCKETS = (1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)


class KeeperCollector(Collector):
    def __init__(self, keeper: GroupKeeper, lag: Callable[[], Mapping[tuple[str, int], int]],
                 ready: Callable[[], bool]) -> None:
        self.keeper, self.lag, self.ready = keeper, lag, ready

    def collect(self) -> Iterator[Metric]:
        tally = self.keeper.tally
        for name, doc, value in (
            ("records", "input records handled", tally.records),
            ("records_skipped", "re-delivered records skipped because a checkpoint covered them", tally.skipped),
            ("records_late", "records whose bar had already closed (fed into the open bar)", tally.late),
            ("records_gap", "offsets an input stream went on past unhandled (retention, compaction, a lost delivery)",
             tally.gaps),
            ("dead_letters", "records sent to the dead-letter topic", tally.dead_letters),
            ("bars_closed", "feature bars closed (instruments × bars)", tally.bars_closed),
            ("regime_changes", "regime signals that changed state", tally.regime_changes),
        ):
            yield CounterMetricFamily(f"{NS}_{name}", doc, value=value)
        outputs = CounterMetricFamily(f"{NS}_outputs", "messages published by topic", labels=["topic"])
        for topic, count in sorted(tally.outputs.items()):
            outputs.add_metric([topic], count)
        yield outputs
        lag = GaugeMetricFamily(f"{NS}_consumer_lag", "records not yet handled, per input stream",
                                labels=["topic", "partition"])
        for (topic, partition), value in sorted(self.lag().items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag
        groups = self.keeper.groups
        yield GaugeMetricFamily(f"{NS}_instruments", "instruments with features on this worker",
                                value=sum(len(g.engine.instruments) for g in list(groups.values())))
        yield GaugeMetricFamily(f"{NS}_groups", "partition groups assigned and restored", value=len(groups))
        yield GaugeMetricFamily(f"{NS}_ready", "1 once state is restored after the last rebalance",
                                value=1.0 if self.ready() else 0.0)


class FeatureMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.close_seconds = Histogram(
            f"{NS}_bar_compute_seconds", "handling a record or timer tick that closed bars: bar series, regimes "
            "and signals of every instrument and interval handed to the producer (the other features follow, "
            "see bar_features_seconds)", registry=reg, buckets=COMPUTE_BUCKETS)
        self.features_seconds = Histogram(
            f"{NS}_bar_features_seconds", "every feature of one group's closed bars, built into bar messages and "
            "handed to the producer (once no group is behind, or after ORDERFLOW_FEATURES_FINISH_WAIT_MS)",
            registry=reg, buckets=COMPUTE_BUCKETS)
        self.tick_to_signal = Histogram(
            f"{NS}_tick_to_signal_seconds", "ts_recv of the record that closed a bar to its regime signals "
            "handed to the producer; meaningful for live data (replays have old ts_recv)",
            registry=reg, buckets=LATENCY_BUCKETS)
        self.arrival_lag = Histogram(
            f"{NS}_arrival_lag_seconds", "Kafka timestamp of the first record of a batch to the batch reaching the "
            "agent: the broker and the consumer's share of the latency, plus any wait behind earlier batches",
            registry=reg, buckets=LATENCY_BUCKETS)
        self.checkpoint_seconds = Histogram(
            f"{NS}_checkpoint_seconds", "one group checkpoint: flush outputs, write and await the changelog",
            registry=reg, buckets=LATENCY_BUCKETS)
        self.checkpoint_bytes = Histogram(
            f"{NS}_checkpoint_bytes", "bytes written by one group checkpoint", registry=reg,
            buckets=(1e3, 1e4, 1e5, 1e6, 4e6, 16e6, 64e6))

    def watch(self, keeper: GroupKeeper, lag: Callable[[], Mapping[tuple[str, int], int]],
              ready: Callable[[], bool]) -> None:
        self.registry.register(KeeperCollector(keeper, lag, ready))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _value(v: float) -> float | None:
    return None if math.isnan(v) else v


def instruments_doc(keeper: GroupKeeper, worker: str, ready: bool) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for number, group in sorted(keeper.groups.items()):
        for name in group.engine.instruments:
            last = {str(iv): frame.ts_event for iv, frame in group.latest.items() if name in frame.instruments}
            rows.append({"instrument": name, "group": number, "last_bar": last})
    rows.sort(key=lambda r: r["instrument"])
    return {"worker": worker, "ready": ready, "groups": sorted(keeper.groups), "instruments": rows}


def features_doc(keeper: GroupKeeper, instrument: str) -> dict[str, Any] | None:
    """The latest closed bar of ``instrument`` for every interval, named values (NaN while warming up: null)."""
    for number, group in keeper.groups.items():
        if instrument not in group.engine.slots:
            continue
        bars = {}
        for iv, frame in sorted(group.latest.items()):
            if instrument in frame.instruments:
                values = {k: _value(v) for k, v in frame.row(instrument).items()}
                bars[str(iv)] = {"interval_ns": iv, "ts_event": frame.ts_event, "values": values}
        return {"instrument": instrument, "group": number, "bars": bars}
    return None


def regimes_doc(keeper: GroupKeeper) -> dict[str, Any]:
    """The regimes at the latest closed bar of every instrument and interval (state null while warming up)."""
    rows: list[dict[str, Any]] = []
    for number, group in sorted(keeper.groups.items()):
        for iv, update in sorted(group.regimes.items()):
            for i, name in enumerate(update.instruments):
                rows.append({
                    "instrument": name, "group": number, "interval_ns": iv, "ts_event": update.ts_event,
                    "volatility": _state(VOL_STATES, int(update.vol_state[i]), float(update.vol_prob[i]),
                                         bool(update.vol_changed[i])),
                    "trend": _state(TREND_STATES, int(update.trend_state[i]), float(update.trend_prob[i]),
                                    bool(update.trend_changed[i])),
                })
    rows.sort(key=lambda r: (r["instrument"], r["interval_ns"]))
    return {"regimes": rows}


def _state(names: tuple[str, ...], state: int, prob: float, changed: bool) -> dict[str, Any]:
    if state < 0:
        return {"state": None, "probability": None, "changed": False}
    return {"state": names[state], "probability": _value(prob), "changed": changed}


def register(app: Any, runtime: Any) -> None:
    """Add the views to the Faust app's web server."""
    keeper: GroupKeeper = runtime.keeper

    @app.page("/features")
    async def instruments(self: Any, request: Any) -> Any:
        return self.json(instruments_doc(keeper, runtime.worker, runtime.ready))

    @app.page("/features/{instrument}")
    async def features(self: Any, request: Any, instrument: str) -> Any:
        doc = features_doc(keeper, instrument)
        if doc is None:
            return self.json({"error": f"instrument {instrument!r} has no features on this worker",
                              "groups": sorted(keeper.groups)}, status=404)
        return self.json(doc)

    @app.page("/regimes")
    async def regimes(self: Any, request: Any) -> Any:
        return self.json(regimes_doc(keeper))

    @app.page("/health")
    async def health(self: Any, request: Any) -> Any:
        status = 200 if runtime.ready and runtime.fatal is None else 503
        doc = {"ready": runtime.ready, "groups": sorted(keeper.groups),
               "error": None if runtime.fatal is None else str(runtime.fatal)}
        return self.json(doc, status=status)

    @app.page("/metrics")
    async def metrics(self: Any, request: Any) -> Any:
        return self.bytes(runtime.metrics.render(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
