"""Counters a book keeps about what it was fed: applied, skipped, anomalous."""

from __future__ import annotations

import msgspec


class BookStats(msgspec.Struct, kw_only=True):
    """What happened to one book so far. Every field is a plain counter except ``crossed_now``.

    ``records`` counts every record offered; ``by_action`` counts those that were not duplicates, by action letter
    (bad records included, they are also counted in ``bad_records``).
    """

    records: int = 0  # every record given to apply / apply_fields
    by_action: dict[str, int] = msgspec.field(default_factory=dict)  # non-duplicate records by action letter
    duplicates_skipped: int = 0  # records already applied (idempotency), not applied again
    bad_records: int = 0  # not applicable: side N with A/C/M, undefined price, size 0 add, unknown action
    unknown_cancels: int = 0  # C of an order the book does not hold (data starting mid-session, gaps)
    unknown_modifies: int = 0  # M of an order the book does not hold (then added, as Databento does)
    over_cancels: int = 0  # C larger than the resting size: the order is removed
    duplicate_adds: int = 0  # A of an order id already resting: the old order is replaced
    maybe_bad_book: int = 0  # records applied that carry F_MAYBE_BAD_BOOK (the venue channel had a gap)
    clears: int = 0  # R records applied
    snapshots: int = 0  # snapshots begun (after an R, or implicitly at a first F_SNAPSHOT add)
    tob_updates: int = 0  # F_TOB adds (side replaced by one level)
    consistency_points: int = 0  # applied records with F_LAST
    crossings: int = 0  # consistency points where best bid >= best ask (as received, before the policy acted)
    locked: int = 0  # of those, points where best bid == best ask
    crossed_now: bool = False  # the last consistency point was crossed or locked (before the policy acted)
    synthetic_fills: int = 0  # fills made by the `match` policy
    stale_dropped: int = 0  # orders removed by the `drop-stale` policy
    trades_dropped: int = 0  # trades discarded because take_trades() was not called often enough
