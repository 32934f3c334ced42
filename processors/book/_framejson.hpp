// A strict reader of one MboFrame's JSON (topics.records.MboFrame, as msgspec writes it) into columns.
//
// It takes the common shape only: an object whose keys are MboFrame's field names without escapes, each at most
// once; integers without fraction or exponent inside their column's range; action, side and symbol as ASCII text
// without escapes; symbol may be null. Anything else (other keys, escapes, floats, out-of-range values, columns of
// unequal length, letters outside ACMRTFN / ABN, invalid JSON) makes parse() return false, and the caller decodes
// the frame with msgspec instead, which accepts or rejects it and names the problem. So whenever parse() returns
// true, its columns equal what msgspec would have decoded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace fj {

enum Field {
    PUBLISHER_ID, INSTRUMENT_ID, SYMBOL, ACTION, SIDE, TS_SENT,
    TS_RECV, TS_EVENT, PRICE, SIZE, CHANNEL_ID, ORDER_ID, FLAGS, TS_IN_DELTA, SEQUENCE,
    FIELD_COUNT
};
constexpr int FIRST_COLUMN = TS_RECV;
constexpr int COLUMNS = FIELD_COUNT - FIRST_COLUMN;

struct Range {
    bool is_signed;
    uint64_t max;      // largest value allowed
    uint64_t neg_max;  // largest magnitude of a negative value allowed (signed only)
};

// Each field's range, in Field order (the Annotated bounds of topics.records).
constexpr Range RANGES[FIELD_COUNT] = {
    {false, 65535u, 0}, {false, 4294967295u, 0}, {false, 0, 0}, {false, 0, 0}, {false, 0, 0},
    {false, UINT64_MAX, 0},
    {false, UINT64_MAX, 0}, {false, UINT64_MAX, 0}, {true, INT64_MAX, 9223372036854775808u},
    {false, 4294967295u, 0}, {false, 255u, 0}, {false, UINT64_MAX, 0}, {false, 255u, 0},
    {true, 2147483647u, 2147483648u}, {false, 4294967295u, 0},
};

struct Frame {
    uint64_t scalar[FIELD_COUNT] = {};
    const char* text[FIELD_COUNT] = {};  // action, side, symbol: start in the input (symbol: nullptr when null)
    size_t text_len[FIELD_COUNT] = {};
    std::vector<uint64_t> column[COLUMNS];  // two's complement bits for the signed columns
    uint32_t seen = 0;  // bit per field
};

class Reader {
  public:
    Reader(const char* data, size_t size) : p_(data), end_(data + size) {}

    bool parse(Frame& f) {
        ws();
        if (!eat('{')) return false;
        ws();
        if (peek() == '}') return false;  // no fields: msgspec reports the first missing one
        while (true) {
            int field = key();
            if (field < 0 || (f.seen >> field) & 1u) return false;  // unknown or repeated: left to msgspec
            f.seen |= 1u << field;
            ws();
            if (!eat(':')) return false;
            ws();
            if (!value(f, field)) return false;
            ws();
            if (eat(',')) { ws(); continue; }
            if (eat('}')) break;
            return false;
        }
        ws();
        return p_ == end_ && complete(f);
    }

  private:
    const char* p_;
    const char* end_;
    size_t hint_ = 256;  // the last column's length: the next one is likely as long

    char peek() const { return p_ < end_ ? *p_ : '\0'; }
    bool eat(char c) {
        if (p_ < end_ && *p_ == c) { ++p_; return true; }
        return false;
    }
    void ws() {
        while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
    }

    // Printable ASCII text up to the closing quote; false on escapes, control or non-ASCII bytes.
    bool text(const char*& start, size_t& len) {
        if (!eat('"')) return false;
        start = p_;
        while (p_ < end_) {
            unsigned char c = static_cast<unsigned char>(*p_);
            if (c == '"') { len = static_cast<size_t>(p_ - start); ++p_; return true; }
            if (c == '\\' || c < 0x20 || c >= 0x80) return false;
            ++p_;
        }
        return false;
    }

    int key() {
        static const char* const NAMES[FIELD_COUNT] = {
            "publisher_id", "instrument_id", "symbol", "action", "side", "ts_sent",
            "ts_recv", "ts_event", "price", "size", "channel_id", "order_id", "flags", "ts_in_delta", "sequence",
        };
        const char* start;
        size_t len;
        if (!text(start, len)) return -1;
        for (int i = 0; i < FIELD_COUNT; ++i) {
            if (std::strlen(NAMES[i]) == len && std::memcmp(NAMES[i], start, len) == 0) return i;
        }
        return -1;
    }

    // A JSON integer within ``r``, as two's complement bits; false on fractions, exponents, leading zeros, -0.
    bool integer(const Range& r, uint64_t& out) {
        bool neg = eat('-');
        const char* start = p_;
        uint64_t mag = 0;
        while (p_ < end_ && static_cast<unsigned>(*p_ - '0') < 10u) {
            mag = mag * 10 + static_cast<uint64_t>(*p_ - '0');  // wraps past 19 digits: checked below
            ++p_;
        }
        size_t digits = static_cast<size_t>(p_ - start);
        if (digits == 0 || digits > 20 || (*start == '0' && digits > 1)) return false;
        if (digits == 20 && std::memcmp(start, "18446744073709551615", 20) > 0) return false;  // beyond uint64
        if (p_ < end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) return false;
        if (neg) {
            if (!r.is_signed || mag == 0 || mag > r.neg_max) return false;
            out = ~mag + 1;
            return true;
        }
        if (mag > r.max) return false;
        out = mag;
        return true;
    }

    bool letters(const char* start, size_t len, const char* allowed) {
        for (size_t i = 0; i < len; ++i) {
            if (std::strchr(allowed, start[i]) == nullptr || start[i] == '\0') return false;
        }
        return true;
    }

    bool value(Frame& f, int field) {
        if (field >= FIRST_COLUMN) return column(f.column[field - FIRST_COLUMN], RANGES[field]);
        if (field == SYMBOL) {
            if (end_ - p_ >= 4 && std::memcmp(p_, "null", 4) == 0) { p_ += 4; f.text[field] = nullptr; return true; }
            return text(f.text[field], f.text_len[field]);
        }
        if (field == ACTION || field == SIDE) {
            return text(f.text[field], f.text_len[field]) &&
                   letters(f.text[field], f.text_len[field], field == ACTION ? "ACMRTFN" : "ABN");
        }
        return integer(RANGES[field], f.scalar[field]);
    }

    bool column(std::vector<uint64_t>& out, const Range& r) {
        if (!eat('[')) return false;
        out.reserve(hint_);
        ws();
        if (eat(']')) return true;
        while (true) {
            uint64_t v;
            if (!integer(r, v)) return false;
            out.push_back(v);
            ws();
            if (eat(',')) { ws(); continue; }
            hint_ = out.size();
            return eat(']');
        }
    }

    // Every required field present, and every column as long as ``action`` (at least one record).
    static bool complete(const Frame& f) {
        const uint32_t optional = (1u << SYMBOL) | (1u << TS_SENT);
        const uint32_t all = (1u << FIELD_COUNT) - 1;
        if ((f.seen | optional) != all) return false;
        size_t n = f.text_len[ACTION];
        if (n == 0 || f.text_len[SIDE] != n) return false;
        for (int c = 0; c < COLUMNS; ++c) {
            if (f.column[c].size() != n) return false;
        }
        return true;
    }
};

}  // namespace fj
