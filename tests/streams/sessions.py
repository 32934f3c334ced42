"""Recorded sessions for the streams tests: the ESH4 day as records and frames, and the offline reference.

The reference is the book engine fed record by record (``Book.apply``) with the BBO read at each consistency
point, exactly as docs/book.md describes it; the streaming worker must publish the same BBO changes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import databento_dbn
import msgspec
import zstandard

from processors.book import Book
from producers.framing import Framer
from topics.records import BboUpdate, MboFrame, MboRecord

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "databento"
ESH4 = DATA / "nautilus" / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"

BboKey = tuple[int, int, int, int | None, int, int, int | None, int, int]


@lru_cache(maxsize=2)
def esh4_records() -> tuple[MboRecord, ...]:
    """The 68,792 MBO records of ESH4 on 2023-12-25 (instrument 17077)."""
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(ESH4.read_bytes()), read_across_frames=True).read()
    policy: Any = databento_dbn.VersionUpgradePolicy.UPGRADE_TO_V3
    decoder = databento_dbn.DBNDecoder(upgrade_policy=policy)
    decoder.write(raw)
    return tuple(
        MboRecord(
            ts_recv=m.ts_recv, ts_event=m.ts_event, publisher_id=int(m.publisher_id), instrument_id=m.instrument_id,
            action=str(getattr(m.action, "value", m.action)),  # type: ignore[arg-type]
            side=str(getattr(m.side, "value", m.side)),  # type: ignore[arg-type]
            price=m.price, size=m.size, channel_id=m.channel_id, order_id=m.order_id, flags=int(m.flags),
            ts_in_delta=m.ts_in_delta, sequence=m.sequence,
        )
        for m in decoder.decode()
        if isinstance(m, databento_dbn.MBOMsg)
    )


def renumbered(records: Sequence[MboRecord], instrument_id: int) -> list[MboRecord]:
    """The same records as another instrument (to spread one recorded day over several partitions)."""
    return [msgspec.structs.replace(r, instrument_id=instrument_id) for r in records]


def interleave(*streams: Sequence[MboRecord], chunk: int = 500) -> list[MboRecord]:
    """Records of several instruments mixed in chunks, order kept within each instrument."""
    out: list[MboRecord] = []
    longest = max(len(s) for s in streams)
    for start in range(0, longest, chunk):
        for s in streams:
            out.extend(s[start:start + chunk])
    return out


def frames(records: Iterable[MboRecord], max_records: int = 250) -> list[MboFrame]:
    """Frames as `orderflow replay` cuts them (the producers' Framer), never splitting an F_LAST event."""
    framer = Framer(max_records=max_records, linger_s=0.0)
    out = framer.add_records(records, now=0.0)
    out.extend(framer.flush())
    return out


def bbo_key(update: BboUpdate) -> BboKey:
    """What identifies a BBO change (duplicate flag left out)."""
    return (update.instrument_id, update.sequence, update.ts_recv, update.bid_px, update.bid_sz, update.bid_ct,
            update.ask_px, update.ask_sz, update.ask_ct)


def offline_bbo(records: Iterable[MboRecord], crossed_policy: str = "keep") -> tuple[list[BboKey], dict[int, Book]]:
    """The BBO changes of the offline engine, in order, and the final books by instrument_id (trades drained)."""
    books: dict[int, Book] = {}
    last: dict[int, tuple[object, object]] = {}
    changes: list[BboKey] = []
    for r in records:
        book = books.get(r.instrument_id)
        if book is None:
            book = books[r.instrument_id] = Book(r.publisher_id, r.instrument_id, crossed_policy)
        point = book.apply(r)
        book.take_trades()
        if not point:
            continue
        bid, ask = book.bbo()
        if (bid, ask) != last.get(r.instrument_id, (None, None)):
            last[r.instrument_id] = (bid, ask)
            changes.append((r.instrument_id, r.sequence, r.ts_recv,
                            bid.price if bid else None, bid.size if bid else 0, bid.count if bid else 0,
                            ask.price if ask else None, ask.size if ask else 0, ask.count if ask else 0))
    return changes, books


@lru_cache(maxsize=1)
def esh4_reference() -> tuple[list[BboKey], dict[int, Book]]:
    """:func:`offline_bbo` of the ESH4 day, computed once per session (do not mutate the books)."""
    return offline_bbo(esh4_records())


# one instrument per partition of a 4-partition topic (murmur2 of the decimal key, as Kafka's partitioners do)
FOUR_INSTRUMENTS = (17087, 17078, 17080, 17077)


def multi_session(instruments: Sequence[int], max_records: int = 250) -> list[MboFrame]:
    """The ESH4 day once per instrument (renumbered), frames interleaved round-robin."""
    per = [frames(renumbered(esh4_records(), inst), max_records) for inst in instruments]
    out: list[MboFrame] = []
    for i in range(max(len(f) for f in per)):
        out.extend(f[i] for f in per if i < len(f))
    return out


def reference_for(instrument_id: int) -> list[BboKey]:
    """The offline BBO changes of the ESH4 day as ``instrument_id``."""
    return [(instrument_id, *key[1:]) for key in esh4_reference()[0]]
