"""The simulated stream: clean through the book engine, deterministic, realistic, duplicates and malformed kept."""

from __future__ import annotations

import statistics
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

from processors.book import Market
from producers.simulator.generator import Malformed, SimConfig, SimEvent, Simulator
from producers.simulator.output import StreamWriter, format_price
from topics import codec
from topics.errors import DecodeError
from topics.records import F_LAST, F_SNAPSHOT, MboFrame, MboRecord

pytestmark = pytest.mark.unit


def stream(records: int = 60_000, **config: object) -> tuple[Simulator, list[SimEvent | Malformed]]:
    sim = Simulator(SimConfig(**config))  # type: ignore[arg-type]
    return sim, list(sim.take(records=records))


def records_of(items: list[SimEvent | Malformed]) -> list[MboRecord]:
    return [r for item in items if isinstance(item, SimEvent) for r in item.records]


def test_stream_replays_cleanly_through_the_book_engine() -> None:
    sim, items = stream(instruments=12, seed=5)
    market = Market()
    for r in records_of(items):
        market.apply(r)
    for book in market:
        s = book.stats
        assert (s.unknown_cancels, s.unknown_modifies, s.over_cancels, s.bad_records, s.duplicate_adds) == (0,) * 5
        assert s.crossings == 0 and s.snapshots == 1 and s.clears == 1
        for side in "BA":
            assert all(level.size > 0 and level.count > 0 for level in book.levels(side, depth=10_000))
    for sim_book in sim.books:  # the consumer's books equal the simulator's own
        mine = market.book(sim.config.publisher_id, sim_book.instrument_id)
        assert mine is not None and mine.order_count == len(sim_book.orders)
        for order_id, order in sim_book.orders.items():
            assert mine.order(order_id) == (order.side, order.price * sim_book.tick, order.size)


def test_mid_session_start_shows_unknown_orders_only_from_the_unpublished_book() -> None:
    sim, items = stream(instruments=6, seed=9, mid_session=True)
    market = Market()
    unknown: set[int] = set()
    for r in records_of(items):
        book = market.book_for(r.publisher_id, r.instrument_id)
        if r.action in "CM" and book.order(r.order_id) is None:
            unknown.add(r.order_id)
        market.apply(r)
    assert unknown, "a mid-session start must show cancels or modifies of orders never added"
    assert unknown <= sim.unpublished
    assert all(r.action != "R" and not r.flags & F_SNAPSHOT for r in records_of(items))
    assert sum(b.stats.bad_records + b.stats.over_cancels + b.stats.crossings for b in market) == 0


def test_same_seed_same_bytes_other_seed_other_stream(tmp_path: Path) -> None:
    def write(seed: int, name: str) -> bytes:
        sim = Simulator(SimConfig(instruments=8, seed=seed, dup_rate=0.01, malformed_rate=0.01))
        with StreamWriter(tmp_path / name, sim.symbols, sim.config.start_ns) as writer:
            for item in sim.take(records=20_000):
                if isinstance(item, SimEvent):
                    writer.write(item.records)
        return (tmp_path / name).read_bytes()

    first = write(42, "a.csv")
    assert first == write(42, "b.csv")
    assert first != write(43, "c.csv")
    assert first.startswith(b"ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,price,size,channel_id,")


def test_duplicates_are_sent_at_the_configured_rate_and_skipped_by_books() -> None:
    sim, items = stream(records=80_000, instruments=5, seed=3, dup_rate=0.05)
    rows = records_of(items)
    repeats = sum(1 for a, b in pairwise(rows) if a == b)
    assert repeats == sim.stats.duplicates
    originals = len(rows) - repeats
    expected = 0.05 * originals
    assert abs(repeats - expected) < 5 * (expected * 0.95) ** 0.5  # binomial, five standard deviations
    market = Market()
    for r in rows:
        market.apply(r)
    assert sum(b.stats.duplicates_skipped for b in market) == repeats


def test_malformed_messages_at_the_configured_rate_never_decode() -> None:
    sim, items = stream(records=60_000, instruments=5, seed=4, malformed_rate=0.02)
    bad = [item for item in items if isinstance(item, Malformed)]
    trading_events = sim.stats.events - sim.config.instruments  # openings are never followed by one
    expected = 0.02 * trading_events
    assert len(bad) == sim.stats.malformed and abs(len(bad) - expected) < 5 * expected**0.5
    assert {m.kind for m in bad} == {"not-json", "truncated", "bad-action", "length-mismatch", "wrong-type", "empty"}
    for m in bad:
        with pytest.raises(DecodeError):
            codec.decode(MboFrame, m.value)
        assert int(m.key) in sim.symbols


def test_events_are_realistic() -> None:
    sim, items = stream(records=80_000, instruments=10, seed=8)
    events = [item.records for item in items if isinstance(item, SimEvent)][sim.config.instruments :]
    rows = [r for e in events for r in e]
    for e in events:  # F_LAST on the last record of each event only
        assert [bool(r.flags & F_LAST) for r in e] == [False] * (len(e) - 1) + [True]
    trades = [e for e in events if any(r.action == "T" for r in e)]
    assert trades and all(_trade_shape("".join(r.action for r in e)) for e in trades)
    assert any(len(e) >= 4 for e in events)
    actions = Counter(r.action for r in rows)
    fills = actions["F"]
    assert actions["C"] - fills > 0.6 * actions["A"], "most orders are cancelled"
    sizes = sorted(r.size for r in rows if r.action == "A")
    assert sizes[-1] >= 50 * statistics.median(sizes), "sizes are heavy-tailed"
    bins = Counter((e[0].ts_event - sim.config.start_ns) // 50_000_000 for e in events)  # events per 50 ms
    counts = [bins.get(i, 0) for i in range(int(sim.t / 0.05))]
    assert statistics.pvariance(counts) > 2 * statistics.mean(counts), "arrivals cluster (Fano factor > 2)"
    assert all(a.ts_recv <= b.ts_recv for a, b in pairwise(rows))
    assert abs(len(rows) / sim.t - sim.config.rate) < 0.25 * sim.config.rate
    modifies = [r for r in rows if r.action == "M"]
    assert modifies and len({r.instrument_id for r in rows}) == 10


def _trade_shape(actions: str) -> bool:
    """T..T F..F C..C, maybe a final A for the unfilled rest; as many T as F as C."""
    body = actions[:-1] if actions.endswith("A") else actions
    n = body.count("T")
    return n > 0 and body == "T" * n + "F" * n + "C" * n


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="dup_rate"):
        SimConfig(dup_rate=1.5)
    with pytest.raises(ValueError, match="instruments"):
        SimConfig(instruments=0)


def test_csv_price_format() -> None:
    assert format_price(5_510_000_000) == "5.510000000"
    assert format_price(-250_000_000) == "-0.250000000"
    assert format_price(9_223_372_036_854_775_807) == ""


@pytest.mark.parametrize("name", ["sim.dbn", "sim.dbn.zst"])
def test_dbn_output_replays_record_for_record(tmp_path: Path, name: str) -> None:
    from producers.replay_source import DbnChunks

    sim = Simulator(SimConfig(instruments=4, seed=12, dup_rate=0.02))
    events = [item for item in sim.take(records=8_000) if isinstance(item, SimEvent)]
    with StreamWriter(tmp_path / name, sim.symbols, sim.config.start_ns) as writer:
        for event in events:
            writer.write(event.records)
    source = DbnChunks(tmp_path / name, chunk_records=1000)
    assert source.info.start_ns == sim.config.start_ns
    got = [r for chunk in source for block in chunk.blocks() for r in _records(block)]
    want = [r for e in events for r in e.records]
    assert sorted(got, key=_order) == sorted(want, key=_order)


def _order(r: MboRecord) -> tuple[int, int, int]:
    return (r.instrument_id, r.sequence, r.ts_recv)


def _records(block: object) -> list[MboRecord]:
    from producers.framing import Framer

    framer = Framer(max_records=10_000, linger_s=0.0)
    return [r for f in framer.add(block, 0.0) + framer.flush() for r in f.records()]  # type: ignore[arg-type]
