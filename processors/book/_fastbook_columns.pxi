# Frame columns as C words for Book.apply_frame_columns: array.array columns (as _framejson makes them) are read in
# place; any other sequence is converted value by value first. Either way every value is checked before the first
# record applies.

from cpython cimport array

cdef int _COLUMN_COUNT = 8  # price, size, order_id, flags, sequence, channel_id, ts_recv, ts_event
cdef bint[8] _SIGNED_COLUMN = [True, False, False, False, False, False, False, False]
cdef bint[8] _INT64_FIELD = [True, True, False, True, True, True, False, False]  # Rec field is int64_t


cdef int _column_words(object col, int k, Py_ssize_t n, vector[uint64_t]& store,
                       const uint64_t** out) except -1:
    """Point ``out`` at column ``k``'s values as 64-bit words (two's complement for the signed fields)."""
    cdef bint signed = _SIGNED_COLUMN[k]
    cdef const uint64_t* words
    cdef Py_ssize_t i
    if type(col) is array.array and col.typecode == ("q" if signed else "Q"):
        words = <const uint64_t*>(<array.array>col).data.as_voidptr
        if not signed and _INT64_FIELD[k]:
            for i in range(n):
                if words[i] >> 63:
                    raise OverflowError(f"value {words[i]} at index {i} does not fit a signed 64-bit field")
        out[0] = words
        return 0
    store.resize(n)
    i = 0
    for value in col:
        if signed or _INT64_FIELD[k]:
            store[i] = <uint64_t>(<int64_t>value)
        else:
            store[i] = <uint64_t>value
        i += 1
    out[0] = store.data()
    return 0
