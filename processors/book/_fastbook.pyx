# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: language = c++
"""The compiled twin of :class:`processors.book.book.Book`: same API, same rules, same state, C++ structures.

The book itself lives in ``_fastbook_core.hpp`` (see its header comment for the layout). This module converts
arguments, keeps the Python-facing objects (the :class:`BookStats` of ``stats``, pending :class:`BookTrade`s,
:class:`BookState`), and writes the same log lines as the pure engine, in the same order, through the same
rate-limited log. Action and side letters travel as code points; a string that is not one character (never seen
in real data, always a bad record) gets a private code above the Unicode range so that fingerprints stay exact.
"""

import logging

from msgspec import Raw

from cpython.unicode cimport PyUnicode_GET_LENGTH, PyUnicode_READ_CHAR, PyUnicode_FromOrdinal
from cpython.ref cimport PyObject, _Py_REFCNT
from cython.operator cimport dereference as deref, preincrement as inc
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize
from libcpp.map cimport map as cmap
from libcpp.vector cimport vector

from processors.book.book import POLICIES
from processors.book.errors import PolicyError, SideError, StateError, WrongBookError
from processors.book.state import (
    STATE_VERSION, BookState, ChannelState, DedupState, LevelState, OrderState, copy_stats,
)
from processors.book.stats import BookStats
from topics.logs import RateLimitedLog
from topics.records import BookTrade, Level

logger = logging.getLogger(__name__)

cdef double _NS = 1e-9
cdef int32_t ODD_BASE = 0x110000
cdef int32_t BID = 66, ASK = 65  # "B", "A"
cdef uint8_t MBO_RTYPE = 0xA0
cdef Py_ssize_t MBO_SIZE = 56
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
# the C++ Stats struct holds these int64 counters in this order (BookStats' order), then crossed_now
_COUNTERS = tuple(f for f in BookStats.__struct_fields__ if f not in ("by_action", "crossed_now"))
assert len(_COUNTERS) == 17, _COUNTERS


cdef inline object _ts_int(i128 v):
    return <int64_t>v if fb_i128_neg(v) else <uint64_t>v


cdef inline i128 _ts_c(object v) except *:
    return fb_i128(1, v, 0) if v < 0 else fb_i128(0, 0, v)


cdef class Book:
    """One instrument's book; the API of :class:`processors.book.book.Book` (see docs/book.md)."""

    cdef Core* core
    cdef object _publisher_id, _instrument_id, _policy_name, _stats, _log
    cdef list _py_trades, _odd
    cdef dict _odd_codes
    cdef int64_t _synced[17]  # the counters as last written to the BookStats object
    cdef bint _synced_crossed
    cdef vector[int64_t] _synced_actions  # by_action counts as last written, in core.by_action.seen order
    cdef int64_t _pub_c, _inst_c
    cdef object _bid_cache, _ask_cache  # the Level objects bbo() last returned, and their values
    cdef int64_t _bid_c[3]
    cdef int64_t _ask_c[3]

    def __cinit__(self, *args, **kwargs):
        self.core = new Core()

    def __dealloc__(self):
        del self.core

    def __init__(self, publisher_id, instrument_id, crossed_policy="keep", *, max_pending_trades=100_000):
        if crossed_policy not in POLICIES:
            raise PolicyError(f"crossed_policy {crossed_policy!r} is not one of {', '.join(POLICIES)}")
        self.publisher_id = publisher_id
        self.instrument_id = instrument_id
        self.crossed_policy = crossed_policy
        self._stats = BookStats()
        self._py_trades = []
        self._odd = []
        self._odd_codes = {}
        self.core.max_pending = max_pending_trades
        self._log = RateLimitedLog(logger)

    # ---------------------------------------------------------------- attributes

    @property
    def publisher_id(self):
        return self._publisher_id

    @publisher_id.setter
    def publisher_id(self, value):
        self._publisher_id = value
        self._pub_c = value if 0 <= value <= 0xFFFF else -1

    @property
    def instrument_id(self):
        return self._instrument_id

    @instrument_id.setter
    def instrument_id(self, value):
        self._instrument_id = value
        self._inst_c = value if 0 <= value <= 0xFFFFFFFF else -1

    @property
    def crossed_policy(self):
        return self._policy_name

    @crossed_policy.setter
    def crossed_policy(self, value):
        self._policy_name = value
        self.core.policy = 1 if value == "match" else 2 if value == "drop-stale" else 0

    @property
    def stats(self):
        """The book's :class:`BookStats`: counted in C, written to this object when it is read, and after every
        record while anything else holds a reference to it (so a kept reference stays live, as in the pure
        engine)."""
        self._sync_stats()
        return self._stats

    @stats.setter
    def stats(self, value):
        cdef Stats* c = &self.core.st
        cdef int64_t* counters = <int64_t*>c
        for i, name in enumerate(_COUNTERS):
            counters[i] = getattr(value, name)
        c.crossed_now = value.crossed_now
        self.core.by_action.reset()
        for key, count in value.by_action.items():
            self.core.by_action.slot(self._code(key))[0] = count
        self._stats = value
        memcpy(self._synced, counters, sizeof(self._synced))
        self._synced_crossed = c.crossed_now
        self._synced_actions.clear()
        for code in self.core.by_action.seen:
            self._synced_actions.push_back(self.core.by_action.get(code))

    cdef int _sync_stats(self) except -1:
        """Write the counters that changed since the last time to the BookStats object."""
        cdef Stats* c = &self.core.st
        cdef int64_t* counters = <int64_t*>c
        cdef Py_ssize_t i
        cdef int64_t count
        s = self._stats
        for i in range(17):
            if counters[i] != self._synced[i]:
                setattr(s, _COUNTERS[i], counters[i])
                self._synced[i] = counters[i]
        if c.crossed_now != self._synced_crossed:
            s.crossed_now = self._synced_crossed = c.crossed_now
        cdef vector[int32_t]* seen = &self.core.by_action.seen
        for i in range(<Py_ssize_t>seen.size()):
            count = self.core.by_action.get(deref(seen)[i])
            if i == <Py_ssize_t>self._synced_actions.size():
                self._synced_actions.push_back(count - 1)
            if count != self._synced_actions[i]:
                s.by_action[self._text(deref(seen)[i])] = count
                self._synced_actions[i] = count
        return 0

    # ---------------------------------------------------------------- codes of action and side letters

    cdef inline int32_t _code(self, str s) except -1:
        if PyUnicode_GET_LENGTH(s) == 1:
            return PyUnicode_READ_CHAR(s, 0)
        return self._odd_code(s)

    cdef int32_t _odd_code(self, str s) except -1:
        code = self._odd_codes.get(s)
        if code is None:
            code = self._odd_codes[s] = ODD_BASE + len(self._odd)
            self._odd.append(s)
        return code

    cdef inline str _text(self, int32_t code):
        if code < ODD_BASE:
            return PyUnicode_FromOrdinal(code)
        return self._odd[code - ODD_BASE]

    # ---------------------------------------------------------------- feeding

    def apply(self, rec):
        """Apply one record; True when it was applied and carries F_LAST (the book is consistent: publish now)."""
        if rec.instrument_id != self._instrument_id or rec.publisher_id != self._publisher_id:
            raise WrongBookError(
                f"record of ({rec.publisher_id}, {rec.instrument_id}) given to book "
                f"({self._publisher_id}, {self._instrument_id})"
            )
        return self.apply_fields(
            rec.action, rec.side, rec.price, rec.size, rec.order_id, rec.flags, rec.sequence, rec.channel_id,
            rec.ts_recv, rec.ts_event,
        )

    def apply_fields(self, str action not None, str side not None, int64_t price, int64_t size, uint64_t order_id,
                     int64_t flags, int64_t sequence, int64_t channel_id, uint64_t ts_recv, uint64_t ts_event):
        """Apply one record given field by field; same result as :meth:`apply`. Duplicates return False."""
        cdef Rec r
        r.action = self._code(action)
        r.side = self._code(side)
        r.price = price
        r.size = size
        r.oid = order_id
        r.flags = flags
        r.sequence = sequence
        r.channel = channel_id
        r.ts_recv = ts_recv
        r.ts_event = ts_event
        return self._apply(r)

    cdef inline bint _apply(self, Rec& r) except -1:
        cdef uint32_t ev = self.core.apply(r)
        if ev & ~EV_POINT:
            self._after(ev, r)
        if _Py_REFCNT(<PyObject*>self._stats) > 1:  # someone kept a reference to book.stats: keep it live
            self._sync_stats()
        return ev & EV_POINT

    cdef int _after(self, uint32_t ev, Rec& r) except -1:
        """Log what the record caused, as the pure engine does."""
        cdef Core* c = self.core
        pub, inst = self._publisher_id, self._instrument_id
        now = r.ts_recv * _NS
        if ev & EV_DUP_START:
            self._log.warning("duplicate", now, "book %d/%d: skipping already applied records (a replay?)", pub, inst)
        if ev & EV_DUP_END:
            logger.info("book %d/%d: applying again after %d already applied records", pub, inst, c.ev_dup_run)
        if ev & EV_DUP_ADD:
            self._log.warning("duplicate_add", now, "book %d/%d: add of resting order %d replaces it", pub, inst,
                              r.oid)
        if ev & EV_UNKNOWN_CANCEL:
            self._log.warning("unknown_cancel", now, "book %d/%d: cancel of unknown order %d", pub, inst, r.oid)
        if ev & EV_OVER_CANCEL:
            self._log.warning("over_cancel", now, "book %d/%d: cancel of %d from order %d holding %d", pub, inst,
                              r.size, r.oid, c.ev_held)
        if ev & EV_UNKNOWN_MODIFY:
            self._log.warning("unknown_modify", now, "book %d/%d: modify of unknown order %d, added", pub, inst,
                              r.oid)
        if ev & EV_BAD:
            self._bad(now, r)
        if ev & EV_CROSSED:
            self._log.warning("crossed", now, "book %d/%d crossed at sequence %d: bid %d >= ask %d (policy %s)",
                              pub, inst, r.sequence, c.ev_cross_bid, c.ev_cross_ask, self._policy_name)
        if ev & EV_NO_TRADE_ROOM:
            raise IndexError("pop from an empty deque")
        return 0

    cdef _bad(self, now, Rec& r):
        kind = self.core.ev_bad
        side = self._text(r.side)
        if kind == BAD_ADD:
            msg, args = "add of order %d with side %r, price %d, size %d", (r.oid, side, r.price, r.size)
        elif kind == BAD_CANCEL:
            msg, args = "cancel of order %d with side %r", (r.oid, side)
        elif kind == BAD_MODIFY:
            msg, args = "modify of order %d with side %r, price %d", (r.oid, side, r.price)
        elif kind == BAD_TRADE:
            msg, args = "trade of order %d with side %r", (r.oid, side)
        elif kind == BAD_TOB:
            msg, args = "top-of-book add with side %r", (side,)
        else:
            msg, args = "unknown action %r", (self._text(r.action),)
        self._log.warning("bad_record", now, "book %d/%d: bad record, not applied: " + msg,
                          self._publisher_id, self._instrument_id, *args)

    # ---------------------------------------------------------------- bulk feeding

    def apply_frame(self, frame, on_point=None, bbo_changes=None):
        """Apply an :class:`MboFrame` of this book's instrument (see :meth:`apply_frame_columns`)."""
        if frame.instrument_id != self._instrument_id or frame.publisher_id != self._publisher_id:
            raise WrongBookError(
                f"frame of ({frame.publisher_id}, {frame.instrument_id}) given to book "
                f"({self._publisher_id}, {self._instrument_id})"
            )
        return self.apply_frame_columns(
            frame.action, frame.side, frame.price, frame.size, frame.order_id, frame.flags, frame.sequence,
            frame.channel_id, frame.ts_recv, frame.ts_event, on_point, bbo_changes,
        )

    def apply_frame_columns(self, str action not None, str side not None, price, size, order_id, flags, sequence,
                            channel_id, ts_recv, ts_event, on_point=None, list bbo_changes=None):
        """Apply records given as columns (an MboFrame's); the indices of the consistency points, in order.

        ``on_point(index)`` is called at each consistency point while the book is in that state; ``bbo_changes``
        (a list) gets ``(index, bid, ask)`` at each consistency point whose BBO differs from the previous one's
        in this call (the first point always). Columns of unequal lengths raise ValueError, and values that do not
        fit their field OverflowError, before anything applies. ``array.array`` columns (``"q"`` for ``price``,
        ``"Q"`` for the others, as :func:`processors.book.frames.decode_frame` makes them) are read in place.
        """
        cdef tuple given = (price, size, order_id, flags, sequence, channel_id, ts_recv, ts_event)
        cdef Py_ssize_t n = PyUnicode_GET_LENGTH(action), i
        if PyUnicode_GET_LENGTH(side) != n or any(len(c) != n for c in given):
            raise ValueError("frame columns differ in length")
        cdef vector[uint64_t] store[8]
        cdef const uint64_t* w[8]
        for k in range(_COLUMN_COUNT):
            _column_words(given[k], k, n, store[k], &w[k])
        cdef list points = []
        cdef Rec r
        cdef _BboTrack track = _BboTrack(self, bbo_changes)
        for i in range(n):
            r.oid = w[2][i]
            if i + 1 < n:
                self.core.orders.prefetch(w[2][i + 1])  # the order map is the one structure that misses the cache
            r.action = PyUnicode_READ_CHAR(action, i)
            r.side = PyUnicode_READ_CHAR(side, i)
            r.price = <int64_t>w[0][i]
            r.size = <int64_t>w[1][i]
            r.flags = <int64_t>w[3][i]
            r.sequence = <int64_t>w[4][i]
            r.channel = <int64_t>w[5][i]
            r.ts_recv = w[6][i]
            r.ts_event = w[7][i]
            if self._apply(r):
                points.append(i)
                if bbo_changes is not None:
                    track.point(i)
                if on_point is not None:
                    on_point(i)
        return points

    def apply_dbn(self, data, on_point=None, list bbo_changes=None):
        """Apply raw DBN records (the body of a DBN stream, any version: MBO is 56 bytes in v1, v2 and v3).

        MBO records of this book's (publisher_id, instrument_id) are applied; other records are skipped. Indices
        (for the result, ``on_point`` and ``bbo_changes``, as in :meth:`apply_frame_columns`) count every record
        of ``data``. A buffer that does not end on a record boundary raises ValueError before anything applies.
        """
        cdef const uint8_t[::1] buf = memoryview(data).cast("B")
        cdef Py_ssize_t n = buf.shape[0], pos = 0, length, index = 0
        while pos < n:
            length = buf[pos] * 4
            if length < 16 or pos + length > n:
                raise ValueError(f"truncated or invalid DBN record at byte {pos}")
            pos += length
        cdef list points = []
        cdef Rec r
        cdef _BboTrack track = _BboTrack(self, bbo_changes)
        cdef uint16_t pub
        cdef uint32_t inst
        cdef uint64_t next_oid
        cdef const uint8_t* p
        pos = 0
        while pos < n:
            p = &buf[pos]
            length = p[0] * 4
            if pos + length + MBO_SIZE <= n:  # the next record's order: start fetching its map slot
                memcpy(&next_oid, p + length + 16, 8)
                self.core.orders.prefetch(next_oid)
            if p[1] == MBO_RTYPE and length >= MBO_SIZE:
                memcpy(&pub, p + 2, 2)
                memcpy(&inst, p + 4, 4)
                if pub == self._pub_c and inst == self._inst_c:
                    _read_mbo(p, &r)
                    if self._apply(r):
                        points.append(index)
                        if bbo_changes is not None:
                            track.point(index)
                        if on_point is not None:
                            on_point(index)
            pos += length
            index += 1
        return points

    # ---------------------------------------------------------------- queries

    def bbo(self):
        """Best bid and best ask as (price, size, count); None for an empty side."""
        return self._bid_level(), self._ask_level()

    cdef object _bid_level(self):
        cdef Level_* lv = self.core.bids.best()
        if lv == NULL:
            return None
        if self._bid_cache is None or not _same_level(self._bid_c, lv):
            self._bid_cache = _level(lv)
            _keep_level(self._bid_c, lv)
        return self._bid_cache

    cdef object _ask_level(self):
        cdef Level_* lv = self.core.asks.best()
        if lv == NULL:
            return None
        if self._ask_cache is None or not _same_level(self._ask_c, lv):
            self._ask_cache = _level(lv)
            _keep_level(self._ask_c, lv)
        return self._ask_cache

    cdef Side* _query_side(self, str side) except NULL:
        if side == "B":
            return &self.core.bids
        if side == "A":
            return &self.core.asks
        raise SideError(f"side {side!r}: expected 'B' (bids) or 'A' (asks)")

    def levels(self, side, depth=10):
        """Up to ``depth`` aggregated levels of ``side`` ("B" or "A"), best first."""
        cdef Side* s = self._query_side(side)
        cdef Py_ssize_t n = min(depth, <Py_ssize_t>s.size()), i
        return [_level(s.at(i)) for i in range(n)] if n > 0 else []

    def depth_of(self, side, price):
        """Index of the level at ``price`` on ``side`` (0 = best), or None when there is none."""
        cdef Side* s = self._query_side(side)
        if not INT64_MIN <= price <= INT64_MAX:
            return None
        cdef long d = s.depth_of(price)
        return None if d < 0 else d

    def queue(self, side, price):
        """(order_id, size) of the orders at ``price`` on ``side``, in priority order."""
        cdef Side* s = self._query_side(side)
        if not INT64_MIN <= price <= INT64_MAX:
            return []
        cdef Level_* lv = s.find(price)
        cdef Order* o
        cdef list out = []
        if lv != NULL:
            o = lv.head
            while o != NULL:
                out.append((o.oid, o.size))
                o = o.next
        return out

    def order(self, order_id):
        """(side, price, size) of a resting order, or None."""
        if not 0 <= order_id <= 0xFFFFFFFFFFFFFFFF:
            return None
        cdef Order* o = self.core.orders.get(order_id)
        return None if o == NULL else (self._text(o.side), o.price, o.size)

    @property
    def order_count(self):
        """Resting orders (F_TOB entries are not orders)."""
        return self.core.orders.size()

    def is_crossed(self):
        """Best bid >= best ask now (after the policy acted at the last consistency point)."""
        cdef Level_* b = self.core.bids.best()
        cdef Level_* a = self.core.asks.best()
        return b != NULL and a != NULL and b.price >= a.price

    def take_trades(self):
        """Trades seen (action T) and synthetic fills of the `match` policy since the last call, in order."""
        trades = self._pending_trades()
        self._py_trades.clear()
        self.core.py_trades = 0
        self.core.trades.clear()
        return trades

    cdef list _pending_trades(self):
        cdef Core* c = self.core
        if c.py_drops:
            del self._py_trades[:c.py_drops]
            c.py_drops = 0
        cdef list out = list(self._py_trades)
        cdef Trade t
        for t in c.trades:
            out.append(BookTrade(
                publisher_id=self._publisher_id, instrument_id=self._instrument_id, ts_event=t.ts_event,
                ts_recv=t.ts_recv, sequence=t.sequence, price=t.price, size=t.size, side=self._text(t.side),
                order_id=t.oid, synthetic=t.synthetic,
            ))
        return out

    def to_state(self):
        """Everything needed to rebuild this book exactly (see :class:`BookState`)."""
        return _to_state(self)

    def checkpoint_state(self):
        """:meth:`to_state` for writing: each side comes pre-encoded as MessagePack (``msgspec.Raw``), built in
        C without Python objects per level or order. Encoded with msgspec's MessagePack encoder it gives the
        same bytes as :meth:`to_state`, and decodes into the same :class:`BookState`."""
        return _to_state(self, True)

    def __reduce__(self):  # pickle and copy go through the state, like a checkpoint
        return _unpickle, (type(self), self.to_state(), self.core.max_pending)

    @classmethod
    def from_state(cls, state, *, max_pending_trades=100_000):
        """A book identical to the one that produced ``state``."""
        return _from_state(cls, state, max_pending_trades)


def _unpickle(cls, state, max_pending_trades):
    return cls.from_state(state, max_pending_trades=max_pending_trades)


cdef class _BboTrack:
    """Appends (index, bid, ask) to a list at the consistency points where the BBO changed."""

    cdef Book book
    cdef list out
    cdef object bid, ask
    cdef bint first

    def __cinit__(self, Book book, list out):
        self.book = book
        self.out = out
        self.first = True

    cdef point(self, Py_ssize_t index):
        bid, ask = self.book._bid_level(), self.book._ask_level()
        if self.first or bid is not self.bid or ask is not self.ask:
            if self.first or bid != self.bid or ask != self.ask:
                self.out.append((index, bid, ask))
            self.first = False
            self.bid, self.ask = bid, ask


cdef inline bint _same_level(int64_t* cached, Level_* lv) noexcept:
    return cached[0] == lv.price and cached[1] == lv.total and cached[2] == lv.count - (lv.tob != NULL)


cdef inline void _keep_level(int64_t* cached, Level_* lv) noexcept:
    cached[0] = lv.price
    cached[1] = lv.total
    cached[2] = lv.count - (lv.tob != NULL)


cdef inline object _level(Level_* lv):
    return Level(lv.price, lv.total, lv.count - (lv.tob != NULL))


cdef inline void _read_mbo(const uint8_t* p, Rec* r) noexcept nogil:
    """A DBN MBO record (header 16 bytes, then order_id, price, size, flags, channel_id, action, side, ts_recv,
    ts_in_delta, sequence) as a Rec."""
    cdef uint32_t u32
    memcpy(&r.ts_event, p + 8, 8)
    memcpy(&r.oid, p + 16, 8)
    memcpy(&r.price, p + 24, 8)
    memcpy(&u32, p + 32, 4)
    r.size = u32
    r.flags = p[36]
    r.channel = p[37]
    r.action = p[38]
    r.side = p[39]
    memcpy(&r.ts_recv, p + 40, 8)
    memcpy(&u32, p + 52, 4)
    r.sequence = u32


include "_fastbook_state.pxi"  # _to_state(), _from_state()
include "_fastbook_columns.pxi"  # _column_words()
