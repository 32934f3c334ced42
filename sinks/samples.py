"""Deterministic sample records for the sink's tests and benchmark, and a helper that produces them to Kafka."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

import msgspec
from confluent_kafka import Producer

from topics import codec
from topics.records import BboUpdate, BookTrade, FeatureBar, Level, Mbp10Snapshot, QuoteTick, TradeTick

START_NS = 1_732_500_000_000_000_000  # 2024-11-25T02:00:00Z
TICK = 10_000_000  # 0.01 in 1e-9 fixed point


def bbo_updates(n: int, instruments: int = 4, start_ns: int = START_NS, step_ns: int = 1_000_000,
                seed: int = 7) -> list[BboUpdate]:
    """``n`` BBO updates over ``instruments`` instruments, ``step_ns`` apart, every ts_recv distinct."""
    rng = random.Random(seed)
    mids = [100_000_000_000 + i * 50_000_000_000 for i in range(instruments)]
    out = []
    for i in range(n):
        inst = i % instruments
        mids[inst] += rng.choice((-1, 0, 1)) * TICK
        half = rng.choice((1, 1, 2)) * TICK // 2
        ts = start_ns + i * step_ns
        out.append(BboUpdate(
            publisher_id=1, instrument_id=1000 + inst, ts_event=ts - 1_000, ts_recv=ts, sequence=i + 1,
            bid_px=mids[inst] - half, bid_sz=rng.randint(1, 500), bid_ct=rng.randint(1, 20),
            ask_px=mids[inst] + half, ask_sz=rng.randint(1, 500), ask_ct=rng.randint(1, 20),
        ))
    return out


def mbp10_snapshots(n: int, start_ns: int = START_NS) -> list[Mbp10Snapshot]:
    out = []
    for i in range(n):
        mid = 100_000_000_000 + (i % 7) * TICK
        bids = [Level(mid - (k + 1) * TICK, 10 * (k + 1), k + 1) for k in range(10)]
        asks = [Level(mid + (k + 1) * TICK, 12 * (k + 1), k + 1) for k in range(10)]
        out.append(Mbp10Snapshot(publisher_id=1, instrument_id=1000 + i % 2, ts_event=start_ns + i * 1_000_000,
                                 ts_recv=start_ns + i * 1_000_000 + 500, sequence=i + 1, bids=bids, asks=asks))
    return out


def book_trades(n: int, start_ns: int = START_NS, step_ns: int = 3_000_000, seed: int = 11) -> list[BookTrade]:
    rng = random.Random(seed)
    return [BookTrade(publisher_id=1, instrument_id=1000 + i % 2, ts_event=start_ns + i * step_ns,
                      ts_recv=start_ns + i * step_ns + 700, sequence=i + 1,
                      price=100_000_000_000 + rng.randint(-20, 20) * TICK, size=rng.randint(1, 50),
                      side="A" if rng.random() < 0.5 else "B", order_id=2**63 + i if i % 5 == 0 else i,
                      synthetic=i % 7 == 3)
            for i in range(n)]


def exchange_trades(n: int, start_ns: int = START_NS, step_ns: int = 5_000_000) -> list[TradeTick]:
    return [TradeTick(venue="binance", symbol="BTCUSDT", ts_event=start_ns + i * step_ns,
                      ts_recv=start_ns + i * step_ns + 2_000_000, price=60_000_000_000_000 + (i % 9) * TICK,
                      size=1_000_000 * (1 + i % 4), side="B" if i % 2 else "A", trade_id=str(10_000 + i))
            for i in range(n)]


def exchange_quotes(n: int, start_ns: int = START_NS) -> list[QuoteTick]:
    return [QuoteTick(venue="binance", symbol="BTCUSDT", ts_event=start_ns + i * 4_000_000,
                      ts_recv=start_ns + i * 4_000_000 + 1_000_000, bid_px=60_000_000_000_000 - TICK, bid_sz=10**9,
                      ask_px=60_000_000_000_000 + TICK, ask_sz=2 * 10**9) for i in range(n)]


def feature_bars(n: int, instruments: int = 16, features: int = 1_483, start_ns: int = START_NS,
                 interval_ns: int = 1_000_000_000, seed: int = 5) -> list[FeatureBar]:
    """``n`` feature bars: ``instruments`` per bar end, ``features`` named values each, the first tenth of the
    names still warming up (None)."""
    rng = random.Random(seed)
    names = [f"f{j:04d}" for j in range(features)]
    warm = features // 10
    out = []
    for i in range(n):
        values: dict[str, float | None] = {name: None for name in names[:warm]}
        values.update((name, rng.gauss(0.0, 1.0)) for name in names[warm:])
        out.append(FeatureBar(instrument=f"X{i % instruments}", ts_event=start_ns + (i // instruments) * interval_ns,
                              interval_ns=interval_ns, values=values))
    return out


def key_of(record: msgspec.Struct) -> bytes:
    """The catalog key: instrument_id (``instrument`` for feature bars), or venue:symbol for exchange ticks."""
    inst = getattr(record, "instrument_id", None)
    if inst is None:
        inst = getattr(record, "instrument", None)
    if inst is not None:
        return str(inst).encode()
    return f"{getattr(record, 'venue', '')}:{getattr(record, 'symbol', '')}".encode()


def encoded(records: Iterable[msgspec.Struct]) -> Iterator[tuple[bytes, bytes]]:
    for r in records:
        yield key_of(r), codec.encode(r)


def produce(bootstrap_servers: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Produce (key, value) pairs to ``topic`` (idempotent, lz4) and wait for every delivery; returns the count."""
    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True, "linger.ms": 20,
                         "compression.type": "lz4", "batch.num.messages": 10000})
    failures: list[str] = []

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    count = 0
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 10000 == 0:
            producer.poll(0)
    if producer.flush(60) or failures:
        raise RuntimeError(f"producing to {topic} failed: {failures[:1] or 'flush timed out'}")
    return count
