// Storage of the compiled book: orders, price levels, sides, the order map and pools. See _fastbook_core.hpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include "_fastbook_dedup.hpp"

namespace fb {

struct Level;

struct Order {
    uint64_t oid;
    int64_t price, size, arrival;
    Level* level;
    Order* prev;
    Order* next;
    int32_t side;
};

struct Level {
    int64_t price, total, count;  // count: entries, the F_TOB entry included
    Order* head;
    Order* tail;
    Order* tob;  // the F_TOB entry, or NULL
};

template <typename T>
class Pool {  // fixed-size objects from chunks, recycled through a free list
  public:
    ~Pool() { for (T* c : chunks_) std::free(c); }
    T* get() {
        if (free_.empty()) grow();
        T* p = free_.back();
        free_.pop_back();
        return p;
    }
    void put(T* p) { free_.push_back(p); }

  private:
    void grow() {
        size_t n = chunks_.empty() ? 256 : 4096;
        T* c = static_cast<T*>(std::malloc(n * sizeof(T)));
        if (!c) throw std::bad_alloc();
        chunks_.push_back(c);
        for (size_t i = n; i-- > 0;) free_.push_back(c + i);
    }
    std::vector<T*> chunks_;
    std::vector<T*> free_;
};

class OrderMap {  // order id -> Order*, linear probing, backward-shift deletion
  public:
    OrderMap() { reset(64); }
    size_t size() const { return n_; }
    Order* get(uint64_t k) const {
        size_t i = mix64(k) & mask_;
        while (slots_[i].val) {
            if (slots_[i].key == k) return slots_[i].val;
            i = (i + 1) & mask_;
        }
        return nullptr;
    }
    void put(uint64_t k, Order* v) {
        if ((n_ + 1) * 2 > slots_.size()) rehash(slots_.size() * 2);
        size_t i = mix64(k) & mask_;
        while (slots_[i].val) {
            if (slots_[i].key == k) { slots_[i].val = v; return; }
            i = (i + 1) & mask_;
        }
        slots_[i].key = k;
        slots_[i].val = v;
        ++n_;
    }
    void erase(uint64_t k) {
        size_t i = mix64(k) & mask_;
        while (slots_[i].val) {
            if (slots_[i].key == k) break;
            i = (i + 1) & mask_;
        }
        if (!slots_[i].val) return;
        size_t j = i;
        for (;;) {
            j = (j + 1) & mask_;
            if (!slots_[j].val) break;
            size_t h = mix64(slots_[j].key) & mask_;
            bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
            if (stays) continue;
            slots_[i] = slots_[j];
            i = j;
        }
        slots_[i].val = nullptr;
        --n_;
    }
    void clear() { reset(64); }
    void prefetch(uint64_t k) const { __builtin_prefetch(&slots_[mix64(k) & mask_]); }

  private:
    struct Slot { uint64_t key; Order* val; };
    void reset(size_t cap) {
        slots_.assign(cap, Slot{0, nullptr});
        mask_ = cap - 1;
        n_ = 0;
    }
    void rehash(size_t cap) {
        std::vector<Slot> old;
        old.swap(slots_);
        reset(cap);
        for (const Slot& s : old) if (s.val) put(s.key, s.val);
    }
    std::vector<Slot> slots_;
    size_t mask_ = 0, n_ = 0;
};

struct Slot { int64_t key; Level* lv; };

struct Side {  // levels sorted by key ascending, best last; key = price (bids) or ~price (asks)
    std::vector<Slot> v;
    bool bids;
    size_t size() const { return v.size(); }
    int64_t key(int64_t price) const { return bids ? price : ~price; }
    size_t lower(int64_t k) const {
        return std::lower_bound(v.begin(), v.end(), k, [](const Slot& s, int64_t x) { return s.key < x; }) - v.begin();
    }
    Level* find(int64_t price) const {
        int64_t k = key(price);
        if (!v.empty() && v.back().key == k) return v.back().lv;
        size_t i = lower(k);
        return i < v.size() && v[i].key == k ? v[i].lv : nullptr;
    }
    Level* best() const { return v.empty() ? nullptr : v.back().lv; }
    Level* at(size_t depth) const { return v[v.size() - 1 - depth].lv; }  // 0 = best
    long depth_of(int64_t price) const {
        int64_t k = key(price);
        size_t i = lower(k);
        return i < v.size() && v[i].key == k ? (long)(v.size() - 1 - i) : -1;
    }
};

}  // namespace fb
