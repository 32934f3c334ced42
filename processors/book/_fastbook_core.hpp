// The compiled core of processors.book's L3 book: the same rules as processors/book/book.py (the reference),
// line for line, on C++ data structures. Python-facing work (argument conversion, BookStats, BookState, logging)
// is in _fastbook.pyx; this file only keeps the book, the dedup state, the counters and pending trades, and
// reports what should be logged as event bits (the Cython layer logs them, in the pure engine's order).
//
// Layout: orders in an open-addressing hash map (order id -> Order*); each side a vector of (key, Level*) sorted
// by key ascending with the best level last (key = price for bids, ~price for asks, so that both sides share one
// search), a level holds its entries in a doubly linked list (time priority) with its total size; the F_TOB entry
// of a level (a venue quote, not an order) is linked like an order but not in the map.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <vector>

#include "_fastbook_dedup.hpp"
#include "_fastbook_store.hpp"

namespace fb {

typedef __int128 i128;

static const int64_t UNDEF_PRICE = INT64_MAX;
static const int64_t F_TOB = 64, F_SNAPSHOT = 32, F_MAYBE_BAD_BOOK = 4;
static const int32_t BID = 'B', ASK = 'A', NONE = 'N';

enum : uint32_t {  // event bits returned by Core::apply
    EV_POINT = 1, EV_DUP_START = 2, EV_DUP_END = 4, EV_DUP_ADD = 8, EV_UNKNOWN_CANCEL = 16, EV_OVER_CANCEL = 32,
    EV_UNKNOWN_MODIFY = 64, EV_BAD = 128, EV_CROSSED = 256, EV_NO_TRADE_ROOM = 512,
};
enum : int { BAD_ADD = 1, BAD_CANCEL, BAD_MODIFY, BAD_TRADE, BAD_TOB, BAD_ACTION };
enum : int { KEEP = 0, MATCH = 1, DROP_STALE = 2 };

struct Rec {  // one record; action and side are code points (or codes of odd strings, see _fastbook.pyx)
    int32_t action, side;
    int64_t price, size;
    uint64_t oid;
    int64_t flags, sequence, channel;
    uint64_t ts_recv, ts_event;
};

static inline Fp fp_of(const Rec& r) {
    Fp f;
    f.action = r.action; f.side = r.side; f.price = r.price; f.size = r.size; f.oid = r.oid; f.flags = r.flags;
    f.ts_recv = r.ts_recv; f.ts_event = r.ts_event;
    return f;
}

struct Trade {
    uint64_t ts_event, ts_recv, oid;
    int64_t sequence, price, size;
    int32_t side;
    bool synthetic;
};

struct Stats {  // processors.book.stats.BookStats, by_action apart
    int64_t records = 0, duplicates_skipped = 0, bad_records = 0, unknown_cancels = 0, unknown_modifies = 0,
            over_cancels = 0, duplicate_adds = 0, maybe_bad_book = 0, clears = 0, snapshots = 0, tob_updates = 0,
            consistency_points = 0, crossings = 0, locked = 0, synthetic_fills = 0, stale_dropped = 0,
            trades_dropped = 0;
    bool crossed_now = false;
};
// _fastbook.pyx reads and writes the counters by index, in BookStats' field order
static_assert(offsetof(Stats, trades_dropped) == 16 * sizeof(int64_t), "Stats: 17 int64 counters in a row");

struct ActionCounts {  // by_action, in order of first occurrence
    int64_t ascii[128] = {0};
    bool seen_ascii[128] = {false};
    std::vector<int32_t> seen;
    std::vector<std::pair<int32_t, int64_t>> other;

    int64_t* slot(int32_t code) {
        if (code >= 0 && code < 128) {
            if (!seen_ascii[code]) { seen_ascii[code] = true; seen.push_back(code); }
            return &ascii[code];
        }
        for (auto& p : other) if (p.first == code) return &p.second;
        other.emplace_back(code, 0);
        seen.push_back(code);
        return &other.back().second;
    }
    int64_t get(int32_t code) { return *slot(code); }
    void count(int32_t code) {
        if (code >= 0 && code < 128 && seen_ascii[code]) ++ascii[code];
        else ++*slot(code);
    }
    void reset() {
        std::memset(ascii, 0, sizeof ascii);
        std::memset(seen_ascii, 0, sizeof seen_ascii);
        seen.clear();
        other.clear();
    }
};

class Core {
  public:
    Stats st;
    ActionCounts by_action;
    int policy = KEEP;
    int64_t arrival = 0;
    // dedup (processors.book.dedup.Deduper); ts_high / last_clear_ts are -1 when none
    i128 ts_high = -1, last_clear_ts = -1;
    bool snapshot_open = false, after_clear = false;
    std::map<int64_t, Channel> channels;
    int64_t dup_run = 0;
    // pending trades: py_trades restored Python trades come first (kept by the Cython layer)
    std::deque<Trade> trades;
    int64_t py_trades = 0, py_drops = 0, max_pending = 100000;
    // event payloads for the log lines
    int64_t ev_dup_run = 0, ev_held = 0, ev_cross_bid = 0, ev_cross_ask = 0;
    int ev_bad = 0;

    Core() { bids.bids = true; asks.bids = false; }
    ~Core() { free_all(); }

    Side bids, asks;
    OrderMap orders;

    // ------------------------------------------------------------ feeding

    uint32_t apply(const Rec& r) {
        ev_ = 0;
        st.records++;
        if (((r.flags & F_SNAPSHOT) && r.action == 'A') || r.action == 'R') {
            if (!accept_restart(r)) return skip_duplicate();
        } else {
            Channel* ch = channel(r.channel);
            if ((i128)r.ts_recv < last_clear_ts || ch->is_duplicate(r.sequence, fp_of(r))) return skip_duplicate();
            if (snapshot_open) snapshot_open = after_clear = false;
        }
        if ((i128)r.ts_recv > ts_high) ts_high = r.ts_recv;
        if (dup_run) { ev_ |= EV_DUP_END; ev_dup_run = dup_run; dup_run = 0; }
        by_action.count(r.action);
        if (r.flags & F_MAYBE_BAD_BOOK) st.maybe_bad_book++;
        switch (r.action) {
            case 'A':
                if (r.flags & F_TOB) set_top(r); else add(r);
                break;
            case 'C': cancel(r); break;
            case 'M': modify(r); break;
            case 'T': trade(r); break;
            case 'R':
                clear();
                st.clears++;
                last_clear_ts = r.ts_recv;
                break;
            case 'F': case 'N': break;
            default: bad(BAD_ACTION);
        }
        if (r.flags & F_LAST) {
            st.consistency_points++;
            Level* b = bids.best();
            Level* a = asks.best();
            if (b && a && b->price >= a->price) handle_crossed(b->price, a->price, r);
            else st.crossed_now = false;
            ev_ |= EV_POINT;
        }
        return ev_;
    }

    Channel* channel(int64_t id) {
        if (last_channel_ && last_channel_id_ == id) return last_channel_;
        last_channel_ = &channels[id];
        last_channel_id_ = id;
        return last_channel_;
    }
    void restart_sequences() { channels.clear(); last_channel_ = nullptr; }
    Channel* reset_channel(int64_t id) {  // from_state: a fresh channel (the last one listed wins)
        last_channel_ = nullptr;
        Channel& ch = channels[id];
        ch = Channel();
        return &ch;
    }

    // ------------------------------------------------------------ structure (also used by from_state)

    Order* place(uint64_t oid, int32_t side, int64_t price, int64_t size, int64_t arr) {
        if (!arr) arr = ++arrival;
        Order* o = opool_.get();
        o->oid = oid; o->side = side; o->price = price; o->size = size; o->arrival = arr;
        orders.put(oid, o);
        link_back(level_for(side, price), o);
        return o;
    }
    void place_tob_entry(uint64_t oid, int32_t side, int64_t price, int64_t size, int64_t arr) {
        Order* o = opool_.get();
        o->oid = oid; o->side = side; o->price = price; o->size = size; o->arrival = arr;
        Level* lv = level_for(side, price);
        link_back(lv, o);
        lv->tob = o;
    }
    void remove(Order* o) {
        Level* lv = o->level;
        if (lv->tob == o) lv->tob = nullptr; else orders.erase(o->oid);
        unlink(lv, o);
        opool_.put(o);
        if (!lv->head) drop_level(o->side == BID ? bids : asks, lv);
    }
    Side& side_of(int32_t side) { return side == BID ? bids : asks; }

  private:
    uint32_t ev_ = 0;
    Channel* last_channel_ = nullptr;
    int64_t last_channel_id_ = 0;
    Pool<Order> opool_;
    Pool<Level> lpool_;

    uint32_t skip_duplicate() {
        st.duplicates_skipped++;
        if (!dup_run) ev_ |= EV_DUP_START;
        dup_run++;
        return ev_;
    }

    bool accept_restart(const Rec& r) {
        if (r.action == 'R') {
            i128 ts = r.ts_recv;
            if (ts < ts_high || (ts == ts_high && ts == last_clear_ts)) return false;
            restart_sequences();
            snapshot_open = true;
            after_clear = true;
            return true;
        }
        if ((i128)r.ts_recv < ts_high) return false;
        Order* resting = orders.get(r.oid);
        bool held = resting && resting->side == r.side && resting->price == r.price && resting->size == r.size;
        if (!snapshot_open) {
            if (held && (i128)r.ts_recv == ts_high) return false;
            clear();
            last_clear_ts = r.ts_recv;
            restart_sequences();
            snapshot_open = true;
            st.snapshots++;
        } else if (held) {
            return false;
        } else if (after_clear) {
            st.snapshots++;
        }
        after_clear = false;
        if (r.flags & F_LAST) snapshot_open = false;
        return true;
    }

    static bool is_side(int32_t s) { return s == BID || s == ASK; }

    void add(const Rec& r) {
        if (!is_side(r.side) || r.price == UNDEF_PRICE || r.size <= 0) { bad(BAD_ADD); return; }
        Order* old = orders.get(r.oid);
        if (old) {
            st.duplicate_adds++;
            ev_ |= EV_DUP_ADD;
            remove(old);
        }
        place(r.oid, r.side, r.price, r.size, 0);
    }

    void cancel(const Rec& r) {
        if (!is_side(r.side)) { bad(BAD_CANCEL); return; }
        Order* o = orders.get(r.oid);
        if (!o) { st.unknown_cancels++; ev_ |= EV_UNKNOWN_CANCEL; return; }
        if (r.size < o->size) {
            o->size -= r.size;
            o->level->total -= r.size;
            return;
        }
        if (r.size > o->size) { st.over_cancels++; ev_ |= EV_OVER_CANCEL; ev_held = o->size; }
        remove(o);
    }

    void modify(const Rec& r) {
        if (!is_side(r.side) || r.price == UNDEF_PRICE) { bad(BAD_MODIFY); return; }
        Order* o = orders.get(r.oid);
        if (!o) {
            st.unknown_modifies++;
            ev_ |= EV_UNKNOWN_MODIFY;
            if (r.size > 0) place(r.oid, r.side, r.price, r.size, 0);
            return;
        }
        if (r.size == 0 || o->side != r.side || o->price != r.price) {
            remove(o);
            if (r.size > 0) place(r.oid, r.side, r.price, r.size, 0);
            return;
        }
        Level* lv = o->level;
        lv->total += r.size - o->size;
        if (r.size > o->size) {  // loses priority: back of the queue
            unlink(lv, o);
            link_back(lv, o);
            o->arrival = ++arrival;
        }
        o->size = r.size;
    }

    void trade(const Rec& r) {
        if (!is_side(r.side) && r.side != NONE) { bad(BAD_TRADE); return; }
        push_trade(Trade{r.ts_event, r.ts_recv, r.oid, r.sequence, r.price, r.size, r.side, false});
    }

  public:
    void push_trade(const Trade& t) {
        if (py_trades + (int64_t)trades.size() >= max_pending) {
            if (py_trades > 0) { py_trades--; py_drops++; }
            else if (!trades.empty()) trades.pop_front();
            else { ev_ |= EV_NO_TRADE_ROOM; return; }  // the pure engine's deque.popleft() raises here
            st.trades_dropped++;
        }
        trades.push_back(t);
    }

  private:
    void set_top(const Rec& r) {  // F_TOB add: the whole side becomes one level (or nothing)
        if (!is_side(r.side)) { bad(BAD_TOB); return; }
        st.tob_updates++;
        Side& s = side_of(r.side);
        for (Slot& sl : s.v) free_level(sl.lv);
        s.v.clear();
        if (r.price != UNDEF_PRICE) place_tob_entry(r.oid, r.side, r.price, r.size, ++arrival);
    }

  public:
    void clear() {
        orders.clear();
        for (Slot& sl : bids.v) free_level(sl.lv, false);
        for (Slot& sl : asks.v) free_level(sl.lv, false);
        bids.v.clear();
        asks.v.clear();
    }

  private:
    void free_all() { clear(); }

    void free_level(Level* lv, bool unmap = true) {  // entries go back to the pool (and out of the map)
        for (Order* o = lv->head; o;) {
            Order* next = o->next;
            if (unmap && o != lv->tob) orders.erase(o->oid);
            opool_.put(o);
            o = next;
        }
        lpool_.put(lv);
    }

    void bad(int kind) {
        st.bad_records++;
        ev_ |= EV_BAD;
        ev_bad = kind;
    }

    Level* level_for(int32_t side, int64_t price) {
        Side& s = side_of(side);
        int64_t k = s.key(price);
        if (!s.v.empty() && s.v.back().key == k) return s.v.back().lv;
        size_t i = s.lower(k);
        if (i < s.v.size() && s.v[i].key == k) return s.v[i].lv;
        Level* lv = lpool_.get();
        lv->price = price; lv->total = 0; lv->count = 0; lv->head = lv->tail = lv->tob = nullptr;
        s.v.insert(s.v.begin() + i, Slot{k, lv});
        return lv;
    }

    void drop_level(Side& s, Level* lv) {
        int64_t k = s.key(lv->price);
        if (s.v.back().lv == lv) s.v.pop_back();
        else s.v.erase(s.v.begin() + s.lower(k));
        lpool_.put(lv);
    }

    static void link_back(Level* lv, Order* o) {
        o->level = lv;
        o->next = nullptr;
        o->prev = lv->tail;
        if (lv->tail) lv->tail->next = o; else lv->head = o;
        lv->tail = o;
        lv->count++;
        lv->total += o->size;
    }

    static void unlink(Level* lv, Order* o) {
        if (o->prev) o->prev->next = o->next; else lv->head = o->next;
        if (o->next) o->next->prev = o->prev; else lv->tail = o->prev;
        lv->count--;
        lv->total -= o->size;
    }

    // ------------------------------------------------------------ crossed books (processors/book/crossing.py)

    void handle_crossed(int64_t bid, int64_t ask, const Rec& r) {
        st.crossings++;
        if (bid == ask) st.locked++;
        if (!st.crossed_now) { ev_ |= EV_CROSSED; ev_cross_bid = bid; ev_cross_ask = ask; }
        st.crossed_now = true;
        if (policy == MATCH) st.synthetic_fills += match(r.sequence, r.ts_recv, r.ts_event);
        else if (policy == DROP_STALE) st.stale_dropped += drop_stale();
    }

    struct Entry { int64_t arrival; uint64_t oid; int32_t side; int64_t price, size; };

    void region_orders(std::vector<Entry>& out) {
        Level* b = bids.best();
        Level* a = asks.best();
        if (!b || !a) return;
        int64_t bid = b->price, ask = a->price;
        for (size_t i = bids.lower(bids.key(ask)); i < bids.v.size(); ++i) collect(bids.v[i].lv, out);
        for (size_t i = asks.v.size(); i-- > 0;) {  // ascending prices
            if (asks.v[i].lv->price > bid) break;
            collect(asks.v[i].lv, out);
        }
        std::stable_sort(out.begin(), out.end(), [](const Entry& x, const Entry& y) { return x.arrival < y.arrival; });
    }

    static void collect(Level* lv, std::vector<Entry>& out) {
        for (Order* o = lv->head; o; o = o->next)
            if (o != lv->tob) out.push_back(Entry{o->arrival, o->oid, o->side, o->price, o->size});
    }

    int64_t match(int64_t sequence, uint64_t ts_recv, uint64_t ts_event) {
        std::vector<Entry> entries;
        region_orders(entries);
        for (const Entry& e : entries) remove(orders.get(e.oid));
        int64_t fills = 0;
        for (const Entry& e : entries) {
            int64_t remaining = e.size;
            while (remaining > 0) {
                Order* resting = front_of_opposite(e.side, e.price);
                if (!resting) break;
                int64_t qty = std::min(remaining, resting->size);
                push_trade(Trade{ts_event, ts_recv, e.oid, sequence, resting->price, qty, e.side, true});
                if (qty >= resting->size) remove(resting);
                else { resting->size -= qty; resting->level->total -= qty; }
                remaining -= qty;
                fills++;
            }
            if (remaining > 0) place(e.oid, e.side, e.price, remaining, e.arrival);
        }
        return fills;
    }

    Order* front_of_opposite(int32_t side, int64_t price) {
        Level* lv;
        if (side == BID) {
            lv = asks.best();
            if (!lv || lv->price > price) return nullptr;
        } else {
            lv = bids.best();
            if (!lv || lv->price < price) return nullptr;
        }
        Order* o = lv->head;
        return o == lv->tob ? nullptr : o;  // a venue quote is not matchable
    }

    static int64_t newest(Level* lv) {
        int64_t best = 0;
        for (Order* o = lv->head; o; o = o->next)
            if (o != lv->tob && o->arrival > best) best = o->arrival;
        return best;
    }

    int64_t drop_stale() {
        Level* b = bids.best();
        Level* a = asks.best();
        if (!b || !a) return 0;
        int64_t bid = b->price, ask = a->price;
        std::vector<Level*> bid_lv, ask_lv;  // ascending prices
        for (size_t i = bids.lower(bids.key(ask)); i < bids.v.size(); ++i) bid_lv.push_back(bids.v[i].lv);
        for (size_t i = asks.v.size(); i-- > 0 && asks.v[i].lv->price <= bid;) ask_lv.push_back(asks.v[i].lv);
        size_t nb = bid_lv.size(), na = ask_lv.size();
        std::vector<int64_t> bid_suffix(nb), ask_prefix(na);  // newest bid at or above / ask at or below
        int64_t run = 0;
        for (size_t i = nb; i-- > 0;) { run = std::max(run, newest(bid_lv[i])); bid_suffix[i] = run; }
        run = 0;
        for (size_t i = 0; i < na; ++i) { run = std::max(run, newest(ask_lv[i])); ask_prefix[i] = run; }
        std::vector<Order*> stale;
        for (Level* lv : ask_lv) {  // first bid level priced >= this ask
            size_t i = std::lower_bound(bid_lv.begin(), bid_lv.end(), lv->price,
                                        [](Level* x, int64_t p) { return x->price < p; }) - bid_lv.begin();
            older_than(lv, i < nb ? bid_suffix[i] : 0, stale);
        }
        for (Level* lv : bid_lv) {  // ask levels priced <= this bid
            size_t i = std::upper_bound(ask_lv.begin(), ask_lv.end(), lv->price,
                                        [](int64_t p, Level* x) { return p < x->price; }) - ask_lv.begin();
            older_than(lv, i > 0 ? ask_prefix[i - 1] : 0, stale);
        }
        for (Order* o : stale) remove(o);
        return (int64_t)stale.size();
    }

    static void older_than(Level* lv, int64_t arr, std::vector<Order*>& out) {
        for (Order* o = lv->head; o; o = o->next)
            if (o != lv->tob && o->arrival < arr) out.push_back(o);
    }
};

}  // namespace fb
