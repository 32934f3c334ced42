"""Which engine ``processors.book.Book`` is: the compiled one when its extension is importable, else the pure one.

:data:`PureBook` (``processors.book.book.Book``) is the reference; :data:`FastBook` is the compiled twin
(``processors.book._fastbook.Book``, built by ``pip install``), or None when it is missing. Setting the environment
variable ``ORDERFLOW_PURE_BOOK=1`` selects the pure engine even when the compiled one is there.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from processors.book.book import Book as PureBook

logger = logging.getLogger(__name__)

FastBook: Any = None
try:
    from processors.book._fastbook import Book as FastBook
except ImportError as exc:  # not built on this machine: the pure engine does the work, slower
    logger.warning("processors.book: compiled engine unavailable (%s); using the pure-Python engine", exc)

if TYPE_CHECKING:
    Book = PureBook
else:
    Book = PureBook if FastBook is None or os.environ.get("ORDERFLOW_PURE_BOOK") == "1" else FastBook

COMPILED: bool = Book is not PureBook
ENGINES: dict[str, Any] = {"pure": PureBook, **({"compiled": FastBook} if FastBook is not None else {})}

__all__ = ["COMPILED", "ENGINES", "Book", "FastBook", "PureBook"]
