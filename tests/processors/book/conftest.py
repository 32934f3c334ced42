"""Both book engines run the same tests: ``book_cls`` is the pure-Python reference, then the compiled twin.

Tests that build books through :func:`factory.new_book` use ``pytest.mark.usefixtures("book_cls")``; the others
take ``book_cls`` as an argument. The fixture is session-scoped so that hypothesis tests can use it.
"""

from __future__ import annotations

from typing import Any

import pytest

from processors.book import ENGINES
from tests.processors.book import factory


@pytest.fixture(scope="session", params=["pure", "compiled"])
def book_cls(request: pytest.FixtureRequest) -> Any:
    """The engine under test (``processors.book.PureBook`` or ``processors.book.FastBook``)."""
    cls = ENGINES.get(request.param)
    if cls is None:  # test_book_bulk.py::test_compiled_engine_is_built fails then, unless allowed
        pytest.skip("the compiled book engine is not built on this machine")
    factory.ENGINE = cls
    return cls
