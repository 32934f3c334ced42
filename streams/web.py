"""The worker's web views: ``/books``, ``/books/{instrument}?depth=N``, ``/health`` and ``/metrics``.

Prices appear twice: as decimal text (``"4810.25"``, exact, for people) and as the raw 1e-9 fixed-point integer
(``price_raw``, for programs). The documents are built by plain functions of the keeper, tested without a server.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from streams.keeper import Keeper
from streams.publisher import TrackedBook
from topics.fixed import format_fixed
from topics.records import Level

DEFAULT_DEPTH = 10
MAX_DEPTH = 1000


def level_doc(level: Level | None) -> dict[str, Any] | None:
    if level is None:
        return None
    return {"price": format_fixed(level.price), "price_raw": level.price, "size": level.size, "count": level.count}


def book_summary(tracked: TrackedBook, partition: int) -> dict[str, Any]:
    """One book in the ``/books`` list: top of book, where it stands, its counters."""
    book, state = tracked.book, tracked.state
    bid, ask = book.bbo()
    stats = book.stats
    return {
        "publisher_id": book.publisher_id,
        "instrument_id": book.instrument_id,
        "partition": partition,
        "bid": level_doc(bid),
        "ask": level_doc(ask),
        "crossed": book.is_crossed(),
        "sequence": state.sequence,
        "ts_recv": state.ts_recv,
        "ts_event": state.ts_event,
        "offset": state.offset,
        "last_update_ns": tracked.updated_ns or None,
        "last_update": _iso(tracked.updated_ns),
        "orders": book.order_count,
        "frames": state.frames,
        "stats": {f: getattr(stats, f) for f in stats.__struct_fields__},
    }


def books_doc(keeper: Keeper, worker: str, ready: bool) -> dict[str, Any]:
    books = [
        book_summary(tracked, state.partition)
        for state in sorted(keeper.partitions.values(), key=lambda s: s.partition)
        for tracked in state.books.values()
    ]
    books.sort(key=lambda b: (b["instrument_id"], b["publisher_id"]))
    return {"worker": worker, "ready": ready, "partitions": sorted(keeper.partitions), "books": books}


def book_doc(tracked: TrackedBook, partition: int, depth: int) -> dict[str, Any]:
    """One book's levels, ``depth`` per side, best first, with sizes and order counts."""
    book = tracked.book
    doc = book_summary(tracked, partition)
    doc["depth"] = depth
    doc["bids"] = [level_doc(level) for level in book.levels("B", depth)]
    doc["asks"] = [level_doc(level) for level in book.levels("A", depth)]
    return doc


def parse_depth(raw: str | None) -> int:
    """``?depth=N``: 1..MAX_DEPTH, DEFAULT_DEPTH when absent; ValueError naming the problem otherwise."""
    if raw is None or raw == "":
        return DEFAULT_DEPTH
    try:
        depth = int(raw)
    except ValueError:
        raise ValueError(f"depth must be an integer, got {raw!r}") from None
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be between 1 and {MAX_DEPTH}, got {depth}")
    return depth


def _iso(ns: int) -> str | None:
    if not ns:
        return None
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac // 1000:06d}Z"


def register(app: Any, runtime: Any) -> None:
    """Add the views to the Faust app (its aiohttp web server, on the worker's web port)."""
    keeper: Keeper = runtime.keeper

    @app.page("/books")
    async def books(self: Any, request: Any) -> Any:
        return self.json(books_doc(keeper, runtime.config.worker_name, runtime.ready))

    @app.page("/books/{instrument}")
    async def book(self: Any, request: Any, instrument: str) -> Any:
        try:
            depth = parse_depth(request.query.get("depth"))
            instrument_id = int(instrument)
        except ValueError as e:
            return self.json({"error": str(e)}, status=400)
        tracked = keeper.book(instrument_id)
        if tracked is None:
            return self.json({"error": f"instrument {instrument_id} is not kept by this worker",
                              "partitions": sorted(keeper.partitions)}, status=404)
        return self.json(book_doc(tracked, keeper.owners[(tracked.book.publisher_id, instrument_id)], depth))

    @app.page("/health")
    async def health(self: Any, request: Any) -> Any:
        status = 200 if runtime.ready and runtime.fatal is None else 503
        doc = {"ready": runtime.ready, "partitions": sorted(keeper.partitions),
               "books": sum(1 for _ in keeper.books()), "error": None if runtime.fatal is None else str(runtime.fatal)}
        return self.json(doc, status=status)

    @app.page("/metrics")
    async def metrics(self: Any, request: Any) -> Any:
        return self.bytes(runtime.metrics.render(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
