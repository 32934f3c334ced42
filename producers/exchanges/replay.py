"""Replaying a recorded capture through a venue's connector, without sockets (tests, tools, the fake's REST)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from producers.exchanges.base import Record, Venue
from producers.exchanges.capture import CaptureFrame, merge

Observer = Callable[[CaptureFrame, list[Record]], None]


def capture_files(venue: type[Venue] | Venue, root: Path, group: int = 0) -> list[Path]:
    """The files of capture group ``group`` of a venue, under ``root`` (``shared/data/exchanges``)."""
    return [root / rel for rel in venue.captures[group]]


def load(venue: type[Venue] | Venue, root: Path, group: int = 0) -> list[CaptureFrame]:
    return merge(capture_files(venue, root, group))


def replay(
    venue: Venue, frames: Iterable[CaptureFrame], default_symbol: str | None = None,
    observe: Observer | None = None,
) -> list[Record]:
    """Feed received frames and recorded REST snapshots to ``venue`` in order; every record it emits.

    A recorded connection opening resets the venue (as a reconnect does). Resync requests are dropped: a
    replay cannot fetch anything, the recorded snapshots are all it has. ``observe(frame, records)`` is called
    after each frame (tests use it to compare the book with the venue's own quotes).
    """
    out: list[Record] = []
    for fr in frames:
        if fr.kind == "recv":
            recs = venue.handle(fr.payload, fr.ts_ns)
        elif fr.kind == "http":
            symbol = venue.symbol_of_rest(fr.url) or default_symbol
            recs = venue.on_snapshot(symbol, fr.payload, fr.ts_ns) if symbol else []
        elif fr.kind == "open":
            venue.reset()
            recs = []
        else:
            continue
        venue.take_resyncs()
        out.extend(recs)
        if observe is not None:
            observe(fr, recs)
    return out
