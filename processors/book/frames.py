"""Decoding ``mbo.frames`` values for the book: a compiled reader for the usual shape, msgspec for the rest.

:func:`decode_frame` gives the :class:`MboFrame` that ``topics.codec.decode(MboFrame, value)`` gives, or raises
the same :class:`DecodeError`. When the compiled reader (``processors.book._framejson``) is built, a frame in the
shape the producers write (MboFrame's keys, plain integers in range, ASCII letters) is read without making a
Python int per value: its integer columns are ``array.array`` (``"q"`` for ``price`` and ``ts_in_delta``, ``"Q"``
for the others), which the compiled book reads in place. Anything else goes to msgspec, which accepts it or names
what is wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from topics.codec import decode
from topics.records import MboFrame

logger = logging.getLogger(__name__)

_parse: Callable[[bytes], MboFrame | None] | None = None
try:
    from processors.book._framejson import parse_mbo_frame as _parse
except ImportError as exc:  # not built on this machine: msgspec decodes every frame
    logger.info("processors.book: compiled frame reader unavailable (%s); frames are decoded by msgspec", exc)

COMPILED_READER: bool = _parse is not None


def decode_frame(value: bytes) -> MboFrame:
    """The frame in ``value``; raises :class:`topics.errors.DecodeError` naming what is wrong with it.

    A sample value (the first two records of the ESH4 sample, snapshot adds)::

        {"publisher_id":1,"instrument_id":17077,"symbol":"ESH4","ts_recv":[1703462400000000000,1703462400000000000],
         "ts_event":[1703422805243925307,1703422805243925307],"action":"AA","side":"BB",
         "price":[4799000000000,4799000000000],"size":[2,6],"channel_id":[0,0],"order_id":[6412777162812,6412777162851],
         "flags":[40,40],"ts_in_delta":[0,0],"sequence":[682,682],"ts_sent":0}
    """
    if _parse is not None and type(value) is bytes:
        frame = _parse(value)
        if frame is not None:
            return frame
    return decode(MboFrame, value)
