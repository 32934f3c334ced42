"""Throughput of the pure-Python book on a real day (decode excluded), BBO read at every consistency point.

Run with ``-m slow -s`` to see the figures. The assertion is only a floor against order-of-magnitude regressions:
the machine is shared, so timings vary; docs/book.md records the measured figures.
"""

from __future__ import annotations

import logging
import time

import pytest

from processors.book import Book
from tests.processors.book import bookdata as bd

pytestmark = [pytest.mark.unit, pytest.mark.slow]


def best_rate(run: object, n: int, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()  # CPU time: the machine is shared, wall time swings with other jobs
        run()  # type: ignore[operator]
        best = min(best, time.process_time() - t0)
    return n / best


def test_book_throughput_on_esh4(shared_data: object, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="processors.book")
    records = bd.mbo_records(bd.ESH4_1225)
    rows = [(r.action, r.side, r.price, r.size, r.order_id, r.flags, r.sequence, r.channel_id, r.ts_recv,
             r.ts_event) for r in records]

    def by_fields() -> None:
        book = Book(1, 17077)
        apply, bbo = book.apply_fields, book.bbo
        for row in rows:
            if apply(*row):
                bbo()

    def by_record() -> None:
        book = Book(1, 17077)
        apply, bbo = book.apply, book.bbo
        for rec in records:
            if apply(rec):
                bbo()

    fields_rate = best_rate(by_fields, len(rows))
    record_rate = best_rate(by_record, len(records))

    print(f"\napply_fields + bbo: {fields_rate:,.0f} records/s; apply(rec) + bbo: {record_rate:,.0f} records/s")
    assert fields_rate > 50_000 and record_rate > 50_000
