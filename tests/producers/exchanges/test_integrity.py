"""The venues' integrity rules on doctored captures: a gap or a bad checksum resets the book, is counted,
requests a resync, and nothing of the broken book is published; malformed and unknown frames are counted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from producers.exchanges import VENUES, venue_class
from producers.exchanges.base import Resync, Venue
from producers.exchanges.capture import CaptureFrame
from producers.exchanges.replay import load
from tests.producers.exchanges.support import books
from topics.records import L2Update

pytestmark = pytest.mark.unit

GARBAGE = [b"", b"\x00\xff", b"not json", b'{"unterminated": ', b"[1, 2", b"null", b"42", b'"text"', b"[]", b"{}"]


def feed(venue: Venue, frames: list[CaptureFrame], symbol: str | None = None) -> tuple[list[L2Update], list[Resync]]:
    """Replay, keeping the resync requests instead of dropping them."""
    out: list[L2Update] = []
    resyncs: list[Resync] = []
    for fr in frames:
        if fr.kind == "recv":
            out.extend(books(venue.handle(fr.payload, fr.ts_ns)))
        elif fr.kind == "http":
            out.extend(books(venue.on_snapshot(venue.symbol_of_rest(fr.url) or symbol or "", fr.payload, fr.ts_ns)))
        resyncs.extend(venue.take_resyncs())
    return out, resyncs


def without(frames: list[CaptureFrame], marker: bytes, nth: int) -> tuple[list[CaptureFrame], CaptureFrame]:
    """The frames minus the ``nth`` one containing ``marker`` (a sequence gap)."""
    hits = [i for i, f in enumerate(frames) if f.kind == "recv" and marker in f.payload]
    i = hits[nth]
    return frames[:i] + frames[i + 1 :], frames[i]


def test_binance_futures_gap_resets_and_requests_snapshot(captures: Path) -> None:
    cls = venue_class("binance_futures")
    full = load(cls, captures, 0)
    frames, dropped = without(full, b'"depthUpdate"', 100)
    venue = cls(["BTCUSDT"])
    updates, resyncs = feed(venue, frames, "BTCUSDT")
    assert venue.stats.gaps == 1
    assert resyncs == [Resync("BTCUSDT", "snapshot", resyncs[0].reason)]
    assert "pu=" in resyncs[0].reason
    assert not venue.books["BTCUSDT"].synced  # nothing after the gap was applied or published
    clean, _ = feed(cls(["BTCUSDT"]), full, "BTCUSDT")
    assert updates == [u for u in clean if u.ts_recv < dropped.ts_ns]  # exactly what preceded the hole


def test_binance_spot_gap_uses_first_update_id_rule(captures: Path) -> None:
    cls = venue_class("binance")
    frames, _ = without(load(cls, captures, 0), b'"depthUpdate"', 50)
    venue = cls(["BTCUSDT"])
    feed(venue, frames, "BTCUSDT")
    assert venue.stats.gaps == 1 and "U=" in venue.stats.last_reason


def test_binance_snapshot_that_does_not_bridge_is_a_gap(captures: Path) -> None:
    cls = venue_class("binance")
    frames = load(cls, captures, 0)
    venue = cls(["BTCUSDT"])
    early = [f for f in frames if f.kind == "recv"][:5]
    for f in early:
        venue.handle(f.payload, f.ts_ns)
    # a snapshot older than every buffered diff: the first diff cannot bridge it
    venue.on_snapshot("BTCUSDT", b'{"lastUpdateId":1,"bids":[["1.0","1.0"]],"asks":[["2.0","1.0"]]}', 1)
    assert venue.stats.gaps == 1
    assert venue.take_resyncs()[0].how == "snapshot"


@pytest.mark.parametrize("name", ["kraken", "okx"])
def test_bad_checksum_resets_and_reconnects(captures: Path, name: str) -> None:
    cls = venue_class(name)
    frames = load(cls, captures, 0)
    i = [k for k, f in enumerate(frames) if f.kind == "recv" and cls.checksum_field in f.payload][40]
    bad = re.sub(re.escape(cls.checksum_field) + rb"(-?)(\d)", lambda m: cls.checksum_field + m.group(1) + (
        b"1" if m.group(2) != b"1" else b"2"), frames[i].payload, count=1)
    doctored = [*frames[:i], frames[i]._replace(payload=bad), *frames[i + 1 :]]
    venue = cls()
    updates, resyncs = feed(venue, doctored)
    assert venue.stats.checksum_failures == 1
    assert [r.how for r in resyncs] == ["reconnect"]
    assert all(u.ts_recv != frames[i].ts_ns or u.symbol != resyncs[0].symbol for u in updates)
    assert not venue.books[resyncs[0].symbol].synced
    clean = cls()
    clean_updates, _ = feed(clean, frames)
    assert len(updates) < len(clean_updates)


def test_deribit_missing_change_is_a_gap(captures: Path) -> None:
    cls = venue_class("deribit")
    frames, dropped = without(load(cls, captures, 0), b'"type":"change"', 3)
    venue = cls()
    _, resyncs = feed(venue, frames)
    assert venue.stats.gaps == 1 and resyncs[0].how == "reconnect"
    assert resyncs[0].symbol.encode() in dropped.payload


def test_bitmex_update_of_unknown_level_is_a_gap(captures: Path) -> None:
    cls = venue_class("bitmex")
    frames, _ = without(load(cls, captures, 0), b'"table":"orderBookL2","action":"insert"', 5)
    venue = cls()
    feed(venue, frames)
    assert venue.stats.gaps >= 1 and "unknown level id" in venue.stats.last_reason


@pytest.mark.parametrize("name", sorted(VENUES))
def test_garbage_is_counted_never_raised(name: str) -> None:
    venue = venue_class(name)()
    for g in GARBAGE:
        assert venue.handle(g, 1) == []
    assert venue.stats.malformed + venue.stats.unknown == len(GARBAGE)
    assert venue.stats.malformed >= len(GARBAGE) - 2
    assert venue.stats.messages == len(GARBAGE)


def test_unknown_message_types_are_counted() -> None:
    venue = venue_class("binance")()
    venue.handle(b'{"stream":"btcusdt@kline_1m","data":{"e":"kline"}}', 1)
    venue.handle(b'{"stream":"btcusdt@miniTicker","data":{}}', 1)
    assert venue.stats.unknown == 2 and venue.stats.malformed == 0
    assert venue.stats.unknown_types == {"kline": 1, "miniTicker": 1}


def test_wrong_schema_names_the_reason() -> None:
    venue = venue_class("binance")()
    venue.handle(b'{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","p":"x","q":"1","T":1,"m":true}}', 1)
    assert venue.stats.malformed == 1 and "'x' is not a decimal number" in venue.stats.last_reason
    venue.handle(b'{"stream":"btcusdt@trade","data":{"s":"BTCUSDT"}}', 1)
    assert "missing required field" in venue.stats.last_reason
