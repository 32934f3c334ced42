"""Both book engines run the same tests: ``book_cls`` is the pure-Python reference, then the compiled twin.

Tests that build books through :func:`factory.new_book` use ``pytest.mark.usefixtures("book_cls")``; the others
take ``book_cls`` as an argument. The fixture is session-scoped so that hypothesis tests can use it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from processors.book import ENGINES, FastBook
from tests.processors.book import factory


@pytest.fixture(scope="session", params=["pure", "compiled"])
def book_cls(request: pytest.FixtureRequest) -> Any:
    """The engine under test (``processors.book.PureBook`` or ``processors.book.FastBook``)."""
    cls = ENGINES.get(request.param)
    if cls is None:
        if os.environ.get("ORDERFLOW_REQUIRE_COMPILED") == "1":
            pytest.fail("the compiled book engine is not built (pip install -e . builds it)")
        pytest.skip("the compiled book engine is not built on this machine")
    factory.ENGINE = cls
    return cls


def compiled_engine_built() -> bool:
    return FastBook is not None
