# Included at the end of _fastbook.pyx: to_state() / from_state(), the checkpoint format of
# processors/book/state.py, built from and loaded into the C++ core.

cdef object _to_state(Book book, bint packed=False):
    cdef Core* c = book.core
    return BookState(
        version=STATE_VERSION, publisher_id=book._publisher_id, instrument_id=book._instrument_id,
        crossed_policy=book._policy_name, bids=_side_state(book, &c.bids, packed),
        asks=_side_state(book, &c.asks, packed), arrival=c.arrival, stats=copy_stats(book.stats),
        dedup=_dedup_state(book), trades=book._pending_trades(),
    )


cdef object _side_state(Book book, Side* s, bint packed):
    if packed:
        return _packed_side(s)
    cdef list out = []
    cdef Level_* lv
    cdef Order* o
    cdef size_t i
    for i in range(s.size()):
        lv = s.at(i)
        orders = []
        o = lv.head
        while o != NULL:
            orders.append(OrderState(o.oid, o.size, o.arrival))
            o = o.next
        out.append(LevelState(price=lv.price, orders=orders, tob_order_id=None if lv.tob == NULL else lv.tob.oid))
    return out


# MessagePack of one side, as msgspec writes a list[LevelState]: an array of maps {"price", "orders",
# "tob_order_id"} (fields in order), the orders an array of [order_id, size, arrival] arrays (OrderState is
# array_like), every integer in its smallest encoding.

cdef inline void _put_be(vector[unsigned char]& buf, uint64_t v, int nbytes) noexcept:
    cdef int k
    for k in range(nbytes - 1, -1, -1):
        buf.push_back(<unsigned char>((v >> (8 * k)) & 0xff))


cdef inline void _pack_uint(vector[unsigned char]& buf, uint64_t v) noexcept:
    if v < 128:
        buf.push_back(<unsigned char>v)
    elif v < 0x100:
        buf.push_back(0xcc)
        _put_be(buf, v, 1)
    elif v < 0x10000:
        buf.push_back(0xcd)
        _put_be(buf, v, 2)
    elif v < 0x100000000:
        buf.push_back(0xce)
        _put_be(buf, v, 4)
    else:
        buf.push_back(0xcf)
        _put_be(buf, v, 8)


cdef inline void _pack_int(vector[unsigned char]& buf, int64_t v) noexcept:
    if v >= 0:
        _pack_uint(buf, <uint64_t>v)
    elif v >= -32:
        buf.push_back(<unsigned char>(<uint8_t>(v & 0xff)))
    elif v >= -128:
        buf.push_back(0xd0)
        _put_be(buf, <uint64_t>v, 1)
    elif v >= -32768:
        buf.push_back(0xd1)
        _put_be(buf, <uint64_t>v, 2)
    elif v >= -2147483648:
        buf.push_back(0xd2)
        _put_be(buf, <uint64_t>v, 4)
    else:
        buf.push_back(0xd3)
        _put_be(buf, <uint64_t>v, 8)


cdef inline void _pack_array_header(vector[unsigned char]& buf, uint64_t n) noexcept:
    if n < 16:
        buf.push_back(<unsigned char>(0x90 | n))
    elif n < 0x10000:
        buf.push_back(0xdc)
        _put_be(buf, n, 2)
    else:
        buf.push_back(0xdd)
        _put_be(buf, n, 4)


cdef inline void _pack_key(vector[unsigned char]& buf, const char* key, size_t n) noexcept:
    cdef size_t k
    buf.push_back(<unsigned char>(0xa0 | n))  # fixstr: every key here is shorter than 32 bytes
    for k in range(n):
        buf.push_back(<unsigned char>key[k])


cdef object _packed_side(Side* s):
    cdef vector[unsigned char] buf
    cdef Level_* lv
    cdef Order* o
    cdef size_t i
    cdef size_t total = 0
    for i in range(s.size()):  # reserve once: an order takes at most 28 bytes, a level's own fields 50
        total += <size_t>s.at(i).count  # the entries of its list, the F_TOB entry included
    buf.reserve(8 + 50 * s.size() + 28 * total)
    _pack_array_header(buf, s.size())
    for i in range(s.size()):
        lv = s.at(i)
        buf.push_back(0x83)  # a map of three fields
        _pack_key(buf, b"price", 5)
        _pack_int(buf, lv.price)
        _pack_key(buf, b"orders", 6)
        _pack_array_header(buf, <uint64_t>lv.count)
        o = lv.head
        while o != NULL:
            buf.push_back(0x93)
            _pack_uint(buf, o.oid)
            _pack_int(buf, o.size)
            _pack_int(buf, o.arrival)
            o = o.next
        _pack_key(buf, b"tob_order_id", 12)
        if lv.tob == NULL:
            buf.push_back(0xc0)
        else:
            _pack_uint(buf, lv.tob.oid)
    return Raw(PyBytes_FromStringAndSize(<char*>buf.data(), buf.size()))


cdef object _dedup_state(Book book):
    cdef Core* c = book.core
    cdef list channels = []
    cdef cmap[int64_t, Channel].iterator it = c.channels.begin()
    cdef Channel* ch
    cdef size_t i
    while it != c.channels.end():
        ch = &deref(it).second
        group = [_fp_tuple(book, &ch.group[i]) for i in range(ch.group.size())]
        channels.append(ChannelState(
            channel_id=deref(it).first, seq=ch.seq, group=group, cursor=ch.cursor,
            last_fp=_fp_tuple(book, &ch.last_fp) if ch.has_last else None,
        ))
        inc(it)
    return DedupState(ts_high=_ts_int(c.ts_high), last_clear_ts=_ts_int(c.last_clear_ts),
                      snapshot_open=c.snapshot_open, after_clear=c.after_clear, channels=channels)


cdef tuple _fp_tuple(Book book, Fp* f):
    return (book._text(f.action), book._text(f.side), f.price, f.size, f.oid, f.flags, f.ts_recv, f.ts_event)


cdef object _from_state(cls, state, max_pending_trades):
    if state.version != STATE_VERSION:
        raise StateError(f"book state version {state.version}, this engine reads {STATE_VERSION}")
    cdef Book book = cls(state.publisher_id, state.instrument_id, state.crossed_policy,
                         max_pending_trades=max_pending_trades)
    for side, levels in ((BID, state.bids), (ASK, state.asks)):
        for ls in levels:
            _restore_level(book, side, ls)
    book.core.arrival = state.arrival
    book.stats = copy_stats(state.stats)
    _load_dedup(book, state.dedup)
    book._py_trades.extend(state.trades)
    book.core.py_trades = len(book._py_trades)
    return book


cdef _restore_level(Book book, int32_t side, ls):
    if not ls.orders:
        raise StateError(f"empty level at {ls.price} on side {book._text(side)}")
    tob = ls.tob_order_id
    for os_ in ls.orders:
        if tob is not None and os_.order_id == tob:
            book.core.place_tob_entry(os_.order_id, side, ls.price, os_.size, os_.arrival)
        elif book.core.orders.get(os_.order_id) != NULL:
            raise StateError(
                f"order {os_.order_id} is listed twice (level {ls.price}, side {book._text(side)})"
            )
        else:
            book.core.place(os_.order_id, side, ls.price, os_.size, os_.arrival)


cdef _load_dedup(Book book, ds):
    cdef Core* c = book.core
    cdef Channel* ch
    c.ts_high = _ts_c(ds.ts_high)
    c.last_clear_ts = _ts_c(ds.last_clear_ts)
    c.snapshot_open = ds.snapshot_open
    c.after_clear = ds.after_clear
    for cs in ds.channels:
        ch = c.reset_channel(cs.channel_id)
        ch.seq = cs.seq
        ch.cursor = cs.cursor
        for fp in cs.group:
            ch.group.push_back(_fp(book, fp))
        if cs.last_fp is not None:
            ch.has_last = True
            ch.last_fp = _fp(book, cs.last_fp)
        ch.rebuild_starts()


cdef Fp _fp(Book book, fp) except *:
    cdef Fp f
    action, side, f.price, f.size, f.oid, f.flags, f.ts_recv, f.ts_event = fp
    f.action = book._code(action)
    f.side = book._code(side)
    return f
