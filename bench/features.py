"""Feature engine speed: one bar of every feature for many instruments on one core.

    .venv/bin/python bench/features.py [--instruments 2500] [--bars 20]

Each instrument gets a BBO update, a trade and (every 5th bar) an MBP-10 snapshot per 1 s bar, with random walks;
the engine is warmed up until every window is full (the rolling state is then in steady state), then the close of
``--bars`` bars is timed in CPU time (``time.process_time``, one thread). Also prints the per-event feed cost and
the checkpoint size. Results are recorded in docs/benchmarks.md ("Features").
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import platform
import statistics
import time
from typing import Any

import numpy as np

from processors.features import FeatureConfig, FeatureEngine
from topics.records import BboUpdate, BookTrade, Level, Mbp10Snapshot

SECOND = 1_000_000_000
PX = 1_000_000_000


def bar_events(bar: int, n: int, prices: np.ndarray, rng: np.random.Generator) -> list:
    prices += rng.integers(-1, 2, size=n)
    sizes = rng.integers(1, 50, size=(n, 4)).tolist()
    out: list = []
    ts = bar * SECOND + 1
    for i, (p, (bq, aq, tq, side)) in enumerate(zip(prices.tolist(), sizes, strict=True)):
        bid, ask = p * PX, (p + 1) * PX
        common: dict[str, Any] = {"publisher_id": 1, "instrument_id": i, "ts_event": ts, "ts_recv": ts, "sequence": bar}
        out.append(BboUpdate(**common, bid_px=bid, bid_sz=bq, bid_ct=1, ask_px=ask, ask_sz=aq, ask_ct=1))
        out.append(BookTrade(**common, price=bid if side % 2 else ask, size=tq, side="A" if side % 2 else "B",
                             order_id=1))
        if bar % 5 == 0:
            out.append(Mbp10Snapshot(**common, bids=[Level(bid - k * PX, bq + k, 1) for k in range(10)],
                                     asks=[Level(ask + k * PX, aq + k, 1) for k in range(10)]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instruments", type=int, default=2500)
    ap.add_argument("--bars", type=int, default=20, help="timed bars after the warm-up")
    args = ap.parse_args()
    n = args.instruments
    cfg = FeatureConfig(intervals_ns=(SECOND,))
    engine = FeatureEngine(cfg, capacity=n)
    rng = np.random.default_rng(1)
    prices = rng.integers(1000, 5000, size=n)
    warmup = cfg.history + 2
    engine.advance_to(0)
    feed_cpu = close_cpu = 0.0
    events_fed = 0
    closes: list[float] = []
    for bar in range(warmup + args.bars):
        events = bar_events(bar, n, prices, rng)
        t0 = time.process_time()
        for rec in events:
            engine.feed(rec)
        t1 = time.process_time()
        (frame,) = engine.advance_to((bar + 1) * SECOND)
        t2 = time.process_time()
        feed_cpu += t1 - t0
        events_fed += len(events)
        if bar >= warmup:
            closes.append(t2 - t1)
        close_cpu += t2 - t1
    nan_share = float(np.isnan(frame.values).mean())
    blob = engine.checkpoint()
    per_bar = statistics.median(closes)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, numpy {np.__version__}")
    print(f"features: {len(engine.names())}, instruments: {n}, bars timed: {len(closes)} after {warmup} warm-up")
    print(f"bar close (all features, all instruments): median {per_bar * 1e3:.1f} ms CPU, "
          f"min {min(closes) * 1e3:.1f} ms, max {max(closes) * 1e3:.1f} ms")
    print(f"per instrument: {per_bar / n * 1e6:.1f} µs; feature values per second: "
          f"{len(engine.names()) * n / per_bar:,.0f}")
    print(f"feed: {events_fed / feed_cpu:,.0f} events/s CPU ({feed_cpu / events_fed * 1e6:.2f} µs per event)")
    print(f"NaN share in the last bar: {nan_share:.3f}; checkpoint: {len(blob) / 1e6:.1f} MB "
          f"({len(blob) / n / 1e3:.1f} KB per instrument)")


if __name__ == "__main__":
    main()
