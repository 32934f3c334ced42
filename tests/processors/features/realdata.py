"""Real event streams for the feature tests: the ESH4 session through the book engine, and Binance spot and
USD-M BTCUSDT captures through the exchange connectors. Cached: several tests use them."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import pytest

from processors.book import Book
from processors.features import Record
from producers.exchanges import VENUES
from producers.exchanges.replay import load, replay
from producers.readers import open_records
from topics.records import BboUpdate, Level, MboRecord, Mbp10Snapshot, QuoteTick, TradeTick

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
ESH4 = SHARED / "databento" / "nautilus" / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
EXCHANGES = SHARED / "exchanges"
ESH4_FROM = int(datetime(2023, 12, 25, 22, 30, tzinfo=UTC).timestamp()) * 10**9  # Globex reopens at 23:00 UTC

Event = tuple[int, Record]  # (time the bar clock sees, record)


def need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is absent")


@lru_cache(maxsize=1)
def esh4_events() -> tuple[Event, ...]:
    """BBO changes, MBP-10 snapshots and trades of ESH4 at each consistency point from 22:30 UTC, by ts_recv."""
    need(ESH4)
    book: Book | None = None
    out: list[Event] = []
    last_bbo: tuple[Level | None, Level | None] = (None, None)
    for rec in open_records(ESH4):
        if book is None:
            book = Book(rec.publisher_id, rec.instrument_id)
        if not book.apply(rec):
            continue
        trades = book.take_trades()
        if rec.ts_recv < ESH4_FROM:
            continue
        out.extend((t.ts_recv, t) for t in trades)
        bbo = book.bbo()
        if bbo != last_bbo:
            last_bbo = bbo
            out.append((rec.ts_recv, _bbo(rec, *bbo)))
        out.append((rec.ts_recv, Mbp10Snapshot(
            publisher_id=rec.publisher_id, instrument_id=rec.instrument_id, ts_event=rec.ts_event,
            ts_recv=rec.ts_recv, sequence=rec.sequence, bids=book.levels("B", 10), asks=book.levels("A", 10))))
    return tuple(out)


def _bbo(rec: MboRecord, bid: Level | None, ask: Level | None) -> BboUpdate:
    return BboUpdate(
        publisher_id=rec.publisher_id, instrument_id=rec.instrument_id, ts_event=rec.ts_event, ts_recv=rec.ts_recv,
        sequence=rec.sequence, bid_px=bid.price if bid else None, bid_sz=bid.size if bid else 0,
        bid_ct=bid.count if bid else 0, ask_px=ask.price if ask else None, ask_sz=ask.size if ask else 0,
        ask_ct=ask.count if ask else 0)


@lru_cache(maxsize=1)
def binance_btc_events() -> tuple[Event, ...]:
    """Quotes and trades of BTCUSDT on Binance spot and USD-M futures (2024-08-08 23:54-24:00), by ts_recv."""
    out: list[Event] = []
    for name in ("binance", "binance_futures"):
        cls = VENUES[name]
        for f in cls.captures[0]:
            need(EXCHANGES / f)
        venue = cls(["BTCUSDT"])
        records = replay(venue, load(cls, EXCHANGES, 0), default_symbol="BTCUSDT")
        out.extend((r.ts_recv, r) for r in records if isinstance(r, QuoteTick | TradeTick))
    out.sort(key=lambda e: e[0])  # stable: each venue keeps its order
    return tuple(out)


@lru_cache(maxsize=1)
def coinbase_events() -> tuple[Event, ...]:
    """Quotes and trades of the ten products of the Coinbase capture (2021-04-17, about 30 s), by ts_recv."""
    cls = VENUES["coinbase"]
    for f in cls.captures[0]:
        need(EXCHANGES / f)
    records = replay(cls(), load(cls, EXCHANGES, 0))
    return tuple((r.ts_recv, r) for r in records if isinstance(r, QuoteTick | TradeTick))
