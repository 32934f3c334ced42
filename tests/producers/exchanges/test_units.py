"""Pure pieces: exact decimal parsing, time stamps, the book, the drop queue, the backoff schedule, captures."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers.exchanges.book import L2Book
from producers.exchanges.capture import parse_line
from producers.exchanges.connection import Backoff
from producers.exchanges.errors import CaptureError
from producers.exchanges.fixed import fx, fx_text, iso_to_ns
from producers.exchanges.queue import DropQueue
from topics.records import L2Level, TradeTick

pytestmark = pytest.mark.unit


@given(st.decimals(min_value=0, max_value=10**9, places=9, allow_nan=False, allow_infinity=False))
def test_fx_is_exact(value: Decimal) -> None:
    text = f"{value:f}"
    assert fx(text) == int(value * 10**9)


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "-1", "0.0000000001", "1e"])
def test_fx_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        fx(bad)


def test_times() -> None:
    assert iso_to_ns("2021-04-17T16:43:37.075687Z") == 1618677817075687000
    assert iso_to_ns("2021-07-22T22:36:10.014Z") == 1626993370014000000
    assert iso_to_ns("2021-07-22T22:36:10Z") == 1626993370000000000
    assert fx_text(fx("0.05120"), 5) == "5120" and fx_text(fx("0.00000500"), 8) == "500"


def test_book_sorted_and_exact() -> None:
    b = L2Book()
    b.replace([L2Level(100, 1), L2Level(300, 2), L2Level(200, 3)], [L2Level(500, 1), L2Level(400, 2)], 7)
    assert b.best_bid() == (300, 2) and b.best_ask() == (400, 2) and b.sequence == 7
    bids, asks = b.apply_text([["0.0000003", "0"], ["0.00000025", "0.000000005"]], [["0.0000004", "0"]])
    assert bids == [L2Level(300, 0), L2Level(250, 5)] and asks == [L2Level(400, 0)]
    assert b.bids() == [(250, 5), (200, 3), (100, 1)] and b.asks() == [(500, 1)]
    b.truncate(2)
    assert b.bids() == [(250, 5), (200, 3)]
    assert not b.crossed()
    b.set_bid(600, 1)
    assert b.crossed()


def tick(venue: str, n: int) -> TradeTick:
    return TradeTick(venue=venue, symbol="S", ts_event=n, ts_recv=n, price=1, size=1, side="B", trade_id=str(n))


@pytest.mark.parametrize(("policy", "kept"), [("drop-oldest", [3, 4, 5]), ("drop-newest", [0, 1, 2])])
def test_queue_policies_count_every_drop(policy: str, kept: list[int]) -> None:
    dropped: list[int] = []

    async def go() -> list[int]:
        q = DropQueue(3, policy, lambda r: dropped.append(r.ts_recv))  # type: ignore[arg-type]
        assert q.put_many([tick("v", i) for i in range(2)]) == 0
        assert q.put_many([tick("v", i) for i in range(2, 6)]) == 3
        return [r.ts_recv for r in await q.get_batch(10)]

    assert asyncio.run(go()) == kept
    assert len(dropped) == 3 and sorted(dropped + kept) == list(range(6))


def test_backoff_schedule() -> None:
    b = Backoff()
    assert [b.ceiling(n) for n in range(4)] == [0.1, 0.2, 0.4, 0.8]
    assert b.ceiling(8) == 25.6 and b.ceiling(9) == 30.0 and b.ceiling(100) == 30.0
    for n in range(12):
        for r in (0.0, 0.5, 0.999):
            assert b.ceiling(n) * (1 - b.jitter) <= b.delay(n, lambda r=r: r) <= b.ceiling(n)  # type: ignore[misc]


def test_capture_lines() -> None:
    fr = parse_line('1633998512.0633569: {"a":1}')
    assert (fr.ts_ns, fr.kind, fr.payload) == (1633998512063356900, "recv", b'{"a":1}')
    fr = parse_line('1723161253937085768 {"stream":"x"}')
    assert (fr.ts_ns, fr.kind) == (1723161253937085768, "recv")
    assert parse_line('1723161254206652067 {"lastUpdateId":5,"bids":[]}').kind == "http"
    fr = parse_line("wss://ws.kraken.com <- 1618678132.83097: {}")
    assert (fr.kind, fr.url) == ("sent", "wss://ws.kraken.com")
    fr = parse_line("https://x/api?symbol=A -> 1641343696.2410529: {}")
    assert (fr.kind, fr.url, fr.ts_ns) == ("http", "https://x/api?symbol=A", 1641343696241052900)
    assert parse_line("wss://h <-> 1618677816.8434298").kind == "open"
    with pytest.raises(CaptureError):
        parse_line("what is this")
