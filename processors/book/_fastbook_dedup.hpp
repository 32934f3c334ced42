// Idempotency of the compiled book (processors/book/dedup.py in C++): record fingerprints and per-channel replay
// detection. See _fastbook_core.hpp.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

namespace fb {

static const int64_t F_LAST = 128;

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

struct Fp {  // a record's identity within its channel and sequence (processors.book.state.Fingerprint)
    int32_t action, side;
    int64_t price, size;
    uint64_t oid;
    int64_t flags;
    uint64_t ts_recv, ts_event;
    bool operator==(const Fp& o) const {
        return oid == o.oid && ts_recv == o.ts_recv && price == o.price && size == o.size && action == o.action &&
               side == o.side && flags == o.flags && ts_event == o.ts_event;
    }
};

struct FpHash {
    size_t operator()(const Fp& f) const {
        uint64_t h = mix64(f.oid) ^ mix64(f.ts_recv + 0x9e3779b97f4a7c15ULL * (uint64_t)f.price);
        return (size_t)(h ^ mix64((uint64_t)f.size * 31 + (uint64_t)f.action * 7 + (uint64_t)f.side + f.ts_event));
    }
};

struct Channel {
    int64_t seq = -1, cursor = 0;
    std::vector<Fp> group;
    std::unordered_map<Fp, int64_t, FpHash> starts;  // event starts after the first record -> position
    bool has_last = false;
    Fp last_fp;

    bool is_duplicate(int64_t sequence, const Fp& fp) {
        if (sequence > seq) {
            if (sequence == 0) return unsequenced(fp);
            seq = sequence;
            group.assign(1, fp);
            if (!starts.empty()) starts.clear();
            cursor = 1;
            last_fp = fp;
            has_last = true;
            return false;
        }
        if (sequence == 0) return unsequenced(fp);
        if (sequence < seq) { cursor = 0; return true; }
        return same_sequence(fp);
    }
    bool unsequenced(const Fp& fp) {
        if (has_last && fp == last_fp) return true;
        last_fp = fp;
        has_last = true;
        return false;
    }
    bool same_sequence(const Fp& fp) {
        int64_t n = (int64_t)group.size();
        if (cursor >= 0 && cursor < n && group[cursor] == fp) { ++cursor; return true; }
        if (n > 0 && group[0] == fp) { cursor = 1; return true; }
        if (!starts.empty()) {
            auto it = starts.find(fp);
            if (it != starts.end()) { cursor = it->second + 1; return true; }
        }
        if (n > 0 && (group.back().flags & F_LAST)) starts.emplace(fp, n);
        group.push_back(fp);
        cursor = n + 1;
        last_fp = fp;
        has_last = true;
        return false;
    }
    void rebuild_starts() {
        starts.clear();
        for (size_t pos = 1; pos < group.size(); ++pos)
            if (group[pos - 1].flags & F_LAST) starts.emplace(group[pos], (int64_t)pos);
    }
};

}  // namespace fb
