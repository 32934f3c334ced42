"""The order book engine: L3 books by order with Databento's MBO rules (pure logic, no I/O, no clock).

See docs/book.md for the rules, the crossed-book policies, idempotency and the state format. ``Book`` is the
compiled engine when its extension is built (``COMPILED``), else the pure-Python reference, ``PureBook``.
"""

from processors.book.book import POLICIES
from processors.book.engine import COMPILED, ENGINES, Book, FastBook, PureBook
from processors.book.errors import BookError, PolicyError, SideError, StateError, WrongBookError
from processors.book.market import Market, MarketState
from processors.book.state import BookState, ChannelState, DedupState, LevelState, OrderState
from processors.book.stats import BookStats

__all__ = [
    "COMPILED",
    "ENGINES",
    "POLICIES",
    "Book",
    "BookError",
    "BookState",
    "BookStats",
    "ChannelState",
    "DedupState",
    "FastBook",
    "LevelState",
    "Market",
    "MarketState",
    "OrderState",
    "PolicyError",
    "PureBook",
    "SideError",
    "StateError",
    "WrongBookError",
]
