"""Bulk feeding of the pure engine: frames, columns and raw DBN, the API the compiled engine runs in C.

:class:`BulkFeeding` is a mixin of :class:`processors.book.book.Book`; it only calls ``apply_fields`` and
``bbo``, so its semantics are by construction those of feeding the records one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from processors.book import dbn
from processors.book.errors import WrongBookError

if TYPE_CHECKING:
    from topics.records import Level, MboFrame

OnIndex = Callable[[int], Any]
BboChange = tuple[int, "Level | None", "Level | None"]


class BulkFeeding:
    """apply_frame, apply_frame_columns and apply_dbn over ``apply_fields`` (see docs/book.md)."""

    publisher_id: int
    instrument_id: int
    apply_fields: Callable[..., bool]
    bbo: Callable[[], tuple[Level | None, Level | None]]

    def apply_frame(self, frame: MboFrame, on_point: OnIndex | None = None,
                    bbo_changes: list[BboChange] | None = None) -> list[int]:
        """Apply an MboFrame of this book's instrument (see :meth:`apply_frame_columns`)."""
        if frame.instrument_id != self.instrument_id or frame.publisher_id != self.publisher_id:
            raise WrongBookError(
                f"frame of ({frame.publisher_id}, {frame.instrument_id}) given to book "
                f"({self.publisher_id}, {self.instrument_id})"
            )
        return self.apply_frame_columns(
            frame.action, frame.side, frame.price, frame.size, frame.order_id, frame.flags, frame.sequence,
            frame.channel_id, frame.ts_recv, frame.ts_event, on_point, bbo_changes,
        )

    def apply_frame_columns(
        self, action: str, side: str, price: Sequence[int], size: Sequence[int], order_id: Sequence[int],
        flags: Sequence[int], sequence: Sequence[int], channel_id: Sequence[int], ts_recv: Sequence[int],
        ts_event: Sequence[int], on_point: OnIndex | None = None, bbo_changes: list[BboChange] | None = None,
    ) -> list[int]:
        """Apply records given as columns; the indices of the consistency points, in order.

        ``on_point(index)`` is called at each consistency point while the book is in that state; ``bbo_changes``
        gets ``(index, bid, ask)`` at each consistency point whose BBO differs from the previous one's in this
        call (the first point always). Columns of unequal lengths raise ValueError before anything applies.
        """
        cols = (action, side, price, size, order_id, flags, sequence, channel_id, ts_recv, ts_event)
        if len({len(c) for c in cols}) > 1:
            raise ValueError("frame columns differ in length")
        points: list[int] = []
        track = _BboTrack(self, bbo_changes)
        apply = self.apply_fields
        for i, row in enumerate(zip(*cols, strict=True)):
            if apply(*row):
                self._point(i, points, track, on_point)
        return points

    def apply_dbn(self, data: bytes | bytearray | memoryview, on_point: OnIndex | None = None,
                  bbo_changes: list[BboChange] | None = None) -> list[int]:
        """Apply raw DBN records (a DBN body: see :func:`processors.book.dbn.dbn_body`); MBO records of this
        book's (publisher_id, instrument_id) apply, others are skipped. Indices count every record of ``data``."""
        points: list[int] = []
        track = _BboTrack(self, bbo_changes)
        apply = self.apply_fields
        for i, rtype, raw in dbn.records(data):
            if rtype != dbn.MBO_RTYPE or len(raw) < dbn.MBO_SIZE:
                continue
            (_, _, pub, inst, ts_event, oid, price, size, flags, chan, action, side, ts_recv, _,
             seq) = dbn.MBO.unpack_from(raw)
            if pub != self.publisher_id or inst != self.instrument_id:
                continue
            if apply(chr(action[0]), chr(side[0]), price, size, oid, flags, seq, chan, ts_recv, ts_event):
                self._point(i, points, track, on_point)
        return points

    def _point(self, i: int, points: list[int], track: _BboTrack, on_point: OnIndex | None) -> None:
        points.append(i)
        track.point(i)
        if on_point is not None:
            on_point(i)


class _BboTrack:
    def __init__(self, book: BulkFeeding, out: list[BboChange] | None) -> None:
        self.book = book
        self.out = out
        self.last: tuple[Level | None, Level | None] | None = None

    def point(self, i: int) -> None:
        if self.out is None:
            return
        bbo = self.book.bbo()
        if bbo != self.last:
            self.out.append((i, *bbo))
            self.last = bbo
