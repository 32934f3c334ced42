"""Shared pieces of the features worker tests: recorded inputs split into topics, and the offline reference (the
pure engine and detectors fed in event-time order, as docs/features-worker.md defines the bars)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from processors.features import FeatureConfig, FeatureEngine, FeatureFrame, Record, instrument_key
from processors.regime import RegimeConfig, RegimeDetector
from streams.features_group import FeatureTopics
from tests.processors.features.realdata import binance_btc_events, esh4_events
from topics.codec import decode, encode
from topics.records import BboUpdate, BookTrade, FeatureBar, Mbp10Snapshot, QuoteTick, RegimeSignal, TradeTick

SECOND = 1_000_000_000
INTERVALS = (5 * SECOND, 60 * SECOND)
ESH4_FROM = 1703546880 * SECOND  # 2023-12-25 23:28 UTC: two minutes before the busiest stretch of the session
ESH4_MINUTES = 20
BINANCE_SECONDS = 150  # of the Binance capture, from its first record
BarKey = tuple[str, int, int]  # instrument, interval, bar end


def topic_of(topics: FeatureTopics, record: Record) -> str:
    kind: dict[type, str] = {BboUpdate: topics.bbo, Mbp10Snapshot: topics.mbp10, BookTrade: topics.book_trades,
                             TradeTick: topics.tick_trades, QuoteTick: topics.tick_quotes}
    return kind[type(record)]


@lru_cache(maxsize=1)
def recorded_events() -> tuple[tuple[int, Record], ...]:
    """ESH4 (book engine: BBO, MBP-10, trades) for 20 minutes from 23:28 UTC and Binance spot/futures BTCUSDT
    quotes and trades for 150 s, each in its recorded order."""
    end = ESH4_FROM + ESH4_MINUTES * 60 * SECOND
    esh4 = [e for e in esh4_events() if ESH4_FROM <= e[0] < end]
    binance = binance_btc_events()
    return (*esh4, *(e for e in binance if e[0] < binance[0][0] + BINANCE_SECONDS * SECOND))


def split(topics: FeatureTopics, events: Sequence[tuple[int, Record]]) -> dict[str, list[bytes]]:
    """The encoded records of each input topic, in the order of ``events``."""
    out: dict[str, list[bytes]] = {t: [] for t in topics.inputs()}
    for _, rec in events:
        out[topic_of(topics, rec)].append(encode(rec))
    return out


def event_times(by_topic: dict[str, list[bytes]], topics: FeatureTopics) -> list[tuple[int, Record]]:
    """Records of every topic with their event time (max of ts_recv and the stream's previous), ordered by it
    (stable: within a topic the order is kept)."""
    types = topics.inputs()
    timed: list[tuple[int, int, Record]] = []
    for topic, values in by_topic.items():
        clock = 0
        for i, value in enumerate(values):
            rec: Any = decode(types[topic], value)
            clock = max(clock, rec.ts_recv)
            timed.append((clock, i, rec))
    timed.sort(key=lambda e: e[0])
    return [(ts, rec) for ts, _, rec in timed]


def offline_frames(events: Sequence[tuple[int, Record]], config: FeatureConfig) -> list[FeatureFrame]:
    """The pure engine over ``events`` (event time, record) in order: each bar's records fed in order, instruments
    new in a bar registered in name order before them, every bar up to the last record's closed."""
    engine = FeatureEngine(config)
    base = config.intervals_ns[0]
    frames: list[FeatureFrame] = []
    engine.advance_to(events[0][0])
    i = 0
    while i < len(events):
        end = (events[i][0] // base + 1) * base
        j = i
        while j < len(events) and events[j][0] < end:
            j += 1
        for name in sorted({instrument_key(r) for _, r in events[i:j]} - engine.slots.keys()):
            engine.slot(name)
        for _, rec in events[i:j]:
            engine.feed(rec)
        frames += engine.advance_to(events[j][0] if j < len(events) else end)
        i = j
    return frames


def offline_outputs(frames: Sequence[FeatureFrame], regime: RegimeConfig
                    ) -> tuple[dict[BarKey, FeatureBar], dict[tuple[str, str, int, int], RegimeSignal]]:
    detectors = {iv: RegimeDetector(regime) for iv in sorted({f.interval_ns for f in frames})}
    bars: dict[BarKey, FeatureBar] = {}
    signals: dict[tuple[str, str, int, int], RegimeSignal] = {}
    for frame in frames:
        for bar in frame.bars():
            bars[(bar.instrument, bar.interval_ns, bar.ts_event)] = bar
        update = detectors[frame.interval_ns].update(frame.instruments, frame.ts_event, frame.interval_ns,
                                                     frame.column("ret"))
        for s in update.signals():
            signals[(s.instrument, s.kind, s.interval_ns, s.ts_event)] = s
    return bars, signals


def same_values(got: FeatureBar, want: FeatureBar, rtol: float = 1e-9) -> bool:
    """Same names, None in the same places, values equal to ``rtol`` (relative, absolute near 0)."""
    if got.values.keys() != want.values.keys():
        return False
    names = list(want.values)
    g = np.array([np.nan if got.values[k] is None else got.values[k] for k in names], dtype=float)
    w = np.array([np.nan if want.values[k] is None else want.values[k] for k in names], dtype=float)
    return bool(np.array_equal(np.isnan(g), np.isnan(w)) and np.allclose(g, w, rtol=rtol, atol=1e-12, equal_nan=True))
