"""Features workers as real subprocesses on the session's broker, in their own topics and consumer group (the book
workers' harness for ports, logs, kill -9 and health; the features worker's command and topics)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from ops.stack.testing import create_topic, delete_topics
from processors.features import Record, instrument_key
from streams.features_group import FeatureTopics
from tests.streams.features_support import topic_of
from tests.streams.feed import read_all
from tests.streams.harness import REPO_ROOT, Pipeline, Worker, get_json
from topics import catalog
from topics.codec import decode, encode
from topics.records import FeatureBar, RegimeSignal


class FeaturesPipeline:
    """Input and output topics ``<prefix>book.bbo`` ... ``<prefix>signals.regime`` and features workers."""

    def __init__(self, base: Pipeline, **env: str) -> None:
        self.base = base
        self.topics = FeatureTopics.with_prefix(base.prefix)
        self.env = {"ORDERFLOW_FEATURES_COMMIT_INTERVAL_MS": "500", **env}
        specs = {self.topics.tick_trades: catalog.TICKS_TRADES, self.topics.tick_quotes: catalog.TICKS_QUOTES,
                 self.topics.bars: catalog.FEATURES_BARS, self.topics.signals: catalog.SIGNALS_REGIME}
        for name, spec in specs.items():  # the book topics and the dead-letter topic exist already
            create_topic(base.stack.settings, name, spec.partitions, spec.config())  # as the book topics

    @property
    def bootstrap(self) -> str:
        return self.base.bootstrap

    @property
    def app_id(self) -> str:
        return f"{self.base.prefix}features"

    def start(self, name: str, workdir: Path | None = None) -> Worker:
        w = self.base.worker(name)
        if workdir is not None:
            w.workdir = workdir
        cmd = [sys.executable, "-m", "streams.cli", "--log-format", "text", "features", "--web-port", str(w.port),
               "--workdir", str(w.workdir), "--app-id", self.app_id, "--topic-prefix", self.base.prefix]
        env = {**self.base.env(), **self.env}
        with w.log.open("ab") as log:
            w.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        return w

    def publish(self, events: Iterable[tuple[int, Record]], extra: Iterable[tuple[str, bytes, bytes]] = ()) -> None:
        """Each record to its topic keyed by its instrument (as the book worker and the ingest publish them);
        ``extra`` (topic, key, value) messages first."""
        prod = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5,
                         "partitioner": "murmur2_random"})
        for topic, key, value in extra:
            prod.produce(topic, value, key)
        for _, rec in events:
            prod.produce(topic_of(self.topics, rec), encode(rec), instrument_key(rec).encode())
            prod.poll(0)
        if prod.flush(60):
            raise RuntimeError("records not delivered")

    def bars(self) -> list[FeatureBar]:
        return [decode(FeatureBar, v) for _, _, _, v in read_all(self.bootstrap, self.topics.bars, 120)]

    def signals(self) -> list[RegimeSignal]:
        return [decode(RegimeSignal, v) for _, _, _, v in read_all(self.bootstrap, self.topics.signals, 120)]

    def close(self) -> None:
        for w in self.base.workers:
            if w.alive():
                self.base.stop(w)
        delete_topics(self.base.stack.settings, [self.topics.tick_trades, self.topics.tick_quotes, self.topics.bars,
                                                 self.topics.signals])


def last_bars(worker: Worker) -> dict[str, dict[str, int]]:
    """instrument -> interval -> end of its latest bar, from ``/features``."""
    status, doc = get_json(worker.url + "/features")
    if status != 200:
        return {}
    return {row["instrument"]: row["last_bar"] for row in doc["instruments"]}


def reached(worker: Worker, want: dict[tuple[str, int], int]) -> bool:
    """Every (instrument, interval) has closed the bar ending at ``want`` (or later)."""
    if not worker.alive():
        return False
    have = last_bars(worker)
    return all(have.get(inst, {}).get(str(iv), 0) >= end for (inst, iv), end in want.items())


def last_wanted(bars: Iterable[Any]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for key in bars:
        inst, iv, end = key
        out[(inst, iv)] = max(out.get((inst, iv), 0), end)
    return out
