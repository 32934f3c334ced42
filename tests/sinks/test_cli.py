"""``orderflow sink --topic``: which table each topic feeds."""

from __future__ import annotations

import pytest

from sinks import tables
from sinks.cli import parse_topics
from sinks.errors import SinkError

pytestmark = pytest.mark.unit


def test_topics_map_to_tables_by_name_or_by_catalog_topic() -> None:
    mapping = parse_topics(["bbo=my.bbo", "book.trades"])

    assert mapping == {"my.bbo": tables.BBO, "book.trades": tables.BOOK_TRADES}


def test_the_former_long_feature_table_name_still_names_the_feature_vectors() -> None:
    mapping = parse_topics(["feature_bars=my.features"])

    assert mapping == {"my.features": tables.FEATURE_BARS}
    assert tables.FEATURE_BARS.name == "feature_vectors"


def test_an_unknown_table_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(SinkError, match=r"unknown table 'nope'.*feature_vectors"):
        parse_topics(["nope=my.topic"])
