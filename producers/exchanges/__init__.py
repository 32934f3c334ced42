"""Crypto-exchange WebSocket connectors: one module per venue, one venue-agnostic connection loop.

``VENUES`` maps a venue name (as used on the command line and in record keys) to its :class:`Venue` class.
"""

from __future__ import annotations

from producers.exchanges.base import Venue
from producers.exchanges.binance import BinanceFutures, BinanceSpot
from producers.exchanges.bitmex import Bitmex
from producers.exchanges.bitstamp import Bitstamp
from producers.exchanges.bybit import Bybit
from producers.exchanges.coinbase import Coinbase
from producers.exchanges.deribit import Deribit
from producers.exchanges.errors import UnknownVenueError
from producers.exchanges.gemini import Gemini
from producers.exchanges.hyperliquid import Hyperliquid
from producers.exchanges.kraken import Kraken
from producers.exchanges.okx import Okx

VENUES: dict[str, type[Venue]] = {
    cls.name: cls
    for cls in (
        BinanceSpot, BinanceFutures, Coinbase, Kraken, Okx, Bybit, Bitstamp, Deribit, Bitmex, Gemini, Hyperliquid,
    )
}


def venue_class(name: str) -> type[Venue]:
    """The connector class for ``name``; raises :class:`UnknownVenueError` listing the known venues."""
    try:
        return VENUES[name]
    except KeyError:
        raise UnknownVenueError(f"unknown venue {name!r}; known: {', '.join(VENUES)}") from None
