# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: language = c++
"""Reading an MboFrame's JSON straight into typed columns (see _framejson.hpp for what it takes).

msgspec makes one Python int per value (about 2,750 for a frame of 250 records); the compiled book only needs
the numbers. :func:`parse_mbo_frame` returns an :class:`MboFrame` whose integer columns are ``array.array``
(``"Q"``, and ``"q"`` for ``price`` and ``ts_in_delta``), which the compiled book reads without converting a
value, or ``None`` when the frame is not in the shape it takes; then msgspec decides.
"""

from cpython cimport array
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy
from libcpp cimport bool as cbool
from libcpp.vector cimport vector

import array as py_array

from topics.records import MboFrame

cdef extern from "_framejson.hpp":
    int PUBLISHER_ID "fj::PUBLISHER_ID"
    int INSTRUMENT_ID "fj::INSTRUMENT_ID"
    int SYMBOL "fj::SYMBOL"
    int ACTION "fj::ACTION"
    int SIDE "fj::SIDE"
    int TS_SENT "fj::TS_SENT"
    int FIRST_COLUMN "fj::FIRST_COLUMN"
    int COLUMNS "fj::COLUMNS"

    cdef cppclass Frame "fj::Frame":
        uint64_t scalar[15]
        const char* text[15]
        size_t text_len[15]
        vector[uint64_t] column[9]
        uint32_t seen

    cdef cppclass Reader "fj::Reader":
        Reader(const char* data, size_t size)
        cbool parse(Frame& f) except +

# column names in the header's order, and whether each is signed
_COLUMN_NAMES = ("ts_recv", "ts_event", "price", "size", "channel_id", "order_id", "flags", "ts_in_delta", "sequence")
_SIGNED = frozenset({"price", "ts_in_delta"})
cdef array.array _UNSIGNED_TEMPLATE = py_array.array("Q")
cdef array.array _SIGNED_TEMPLATE = py_array.array("q")
assert _UNSIGNED_TEMPLATE.itemsize == 8 and _SIGNED_TEMPLATE.itemsize == 8


cdef array.array _column(vector[uint64_t]& values, bint signed):
    cdef Py_ssize_t n = values.size()
    cdef array.array out = array.clone(_SIGNED_TEMPLATE if signed else _UNSIGNED_TEMPLATE, n, False)
    if n:
        memcpy(out.data.as_voidptr, values.data(), n * sizeof(uint64_t))
    return out


cdef str _text(Frame& f, int field):
    return PyUnicode_DecodeASCII(f.text[field], f.text_len[field], NULL)


def parse_mbo_frame(data):
    """The :class:`MboFrame` in ``data`` (bytes) with array columns, or None when msgspec must decode it."""
    if type(data) is not bytes:
        return None
    cdef Frame f
    cdef Reader* reader = new Reader(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    try:
        if not reader.parse(f):
            return None
    finally:
        del reader
    columns = {name: _column(f.column[i], name in _SIGNED) for i, name in enumerate(_COLUMN_NAMES)}
    return MboFrame(
        publisher_id=f.scalar[PUBLISHER_ID], instrument_id=f.scalar[INSTRUMENT_ID],
        symbol=None if f.text[SYMBOL] == NULL else _text(f, SYMBOL),
        action=_text(f, ACTION), side=_text(f, SIDE), ts_sent=f.scalar[TS_SENT], **columns,
    )
