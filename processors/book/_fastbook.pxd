# Declarations of the compiled book's C++ core (_fastbook_core.hpp and the headers it includes) for _fastbook.pyx.

from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libcpp cimport bool as cbool
from libcpp.deque cimport deque
from libcpp.map cimport map as cmap
from libcpp.vector cimport vector

cdef extern from "_fastbook_core.hpp":
    ctypedef long long i128 "fb::i128"  # __int128 in C: only compared, and converted by hand below
    uint32_t EV_POINT "fb::EV_POINT"
    uint32_t EV_DUP_START "fb::EV_DUP_START"
    uint32_t EV_DUP_END "fb::EV_DUP_END"
    uint32_t EV_DUP_ADD "fb::EV_DUP_ADD"
    uint32_t EV_UNKNOWN_CANCEL "fb::EV_UNKNOWN_CANCEL"
    uint32_t EV_OVER_CANCEL "fb::EV_OVER_CANCEL"
    uint32_t EV_UNKNOWN_MODIFY "fb::EV_UNKNOWN_MODIFY"
    uint32_t EV_BAD "fb::EV_BAD"
    uint32_t EV_CROSSED "fb::EV_CROSSED"
    uint32_t EV_NO_TRADE_ROOM "fb::EV_NO_TRADE_ROOM"
    int BAD_ADD "fb::BAD_ADD"
    int BAD_CANCEL "fb::BAD_CANCEL"
    int BAD_MODIFY "fb::BAD_MODIFY"
    int BAD_TRADE "fb::BAD_TRADE"
    int BAD_TOB "fb::BAD_TOB"

    cdef struct Rec "fb::Rec":
        int32_t action, side
        int64_t price, size
        uint64_t oid
        int64_t flags, sequence, channel
        uint64_t ts_recv, ts_event

    cdef struct Fp "fb::Fp":
        int32_t action, side
        int64_t price, size
        uint64_t oid
        int64_t flags
        uint64_t ts_recv, ts_event

    cdef struct Order "fb::Order":
        uint64_t oid
        int64_t price, size, arrival
        int32_t side
        Order* next

    cdef struct Level_ "fb::Level":
        int64_t price, total, count
        Order* head
        Order* tob

    cdef cppclass Side "fb::Side":
        size_t size()
        Level_* best()
        Level_* at(size_t depth)
        Level_* find(int64_t price)
        long depth_of(int64_t price)

    cdef cppclass OrderMap "fb::OrderMap":
        size_t size()
        Order* get(uint64_t key)
        void prefetch(uint64_t key)

    cdef cppclass Channel "fb::Channel":
        int64_t seq, cursor
        vector[Fp] group
        cbool has_last
        Fp last_fp
        void rebuild_starts()

    cdef struct Trade "fb::Trade":
        uint64_t ts_event, ts_recv, oid
        int64_t sequence, price, size
        int32_t side
        cbool synthetic

    cdef struct Stats "fb::Stats":
        int64_t records, duplicates_skipped, bad_records, unknown_cancels, unknown_modifies, over_cancels
        int64_t duplicate_adds, maybe_bad_book, clears, snapshots, tob_updates, consistency_points, crossings
        int64_t locked, synthetic_fills, stale_dropped, trades_dropped
        cbool crossed_now

    cdef cppclass ActionCounts "fb::ActionCounts":
        vector[int32_t] seen
        int64_t* slot(int32_t code) except +
        int64_t get(int32_t code) except +
        void reset()

    cdef cppclass Core "fb::Core":
        Stats st
        ActionCounts by_action
        int policy
        int64_t arrival
        i128 ts_high, last_clear_ts
        cbool snapshot_open, after_clear
        cmap[int64_t, Channel] channels
        deque[Trade] trades
        int64_t py_trades, py_drops, max_pending
        int64_t ev_dup_run, ev_held, ev_cross_bid, ev_cross_ask
        int ev_bad
        Side bids, asks
        OrderMap orders
        uint32_t apply(const Rec& r) except +
        Order* place(uint64_t oid, int32_t side, int64_t price, int64_t size, int64_t arrival) except +
        void place_tob_entry(uint64_t oid, int32_t side, int64_t price, int64_t size, int64_t arrival) except +
        Channel* reset_channel(int64_t id) except +

cdef extern from *:
    """
    static inline __int128 fb_i128(int neg, long long s, unsigned long long u) { return neg ? (__int128)s : (__int128)u; }
    static inline int fb_i128_neg(__int128 v) { return v < 0; }
    """
    i128 fb_i128(int neg, long long s, unsigned long long u)
    int fb_i128_neg(i128 v)
