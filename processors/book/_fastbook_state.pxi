# Included at the end of _fastbook.pyx: to_state() / from_state(), the checkpoint format of
# processors/book/state.py, built from and loaded into the C++ core.

cdef object _to_state(Book book):
    cdef Core* c = book.core
    return BookState(
        version=STATE_VERSION, publisher_id=book._publisher_id, instrument_id=book._instrument_id,
        crossed_policy=book._policy_name, bids=_side_state(book, &c.bids), asks=_side_state(book, &c.asks),
        arrival=c.arrival, stats=copy_stats(book.stats), dedup=_dedup_state(book),
        trades=book._pending_trades(),
    )


cdef list _side_state(Book book, Side* s):
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
