"""One suite, two stores: the in-memory twin and PostgreSQL must agree on keys, counts and content."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sinks import copybin, samples, tables
from sinks.errors import StoreError
from sinks.store import RowStore, truncate_ts
from sinks.tables import Row
from topics.records import FeatureBar

pytestmark = pytest.mark.unit  # the postgres variant adds the integration marker


def bbo_rows(n: int, start: int = 0) -> list[Row]:
    return [tables.BBO.rows_of(r)[0] for r in samples.bbo_updates(start + n)[start:]]


def feature_rows(names: tuple[str, ...], bars: int = 3, instrument: str = "1000", start: int = 0) -> list[Row]:
    """Feature vectors of ``bars`` consecutive 1 s bars, the first feature warming up in the first bar."""
    records = [FeatureBar(instrument=instrument, ts_event=10**18 + (start + i) * 10**9, interval_ns=10**9,
                          values={n: None if i == 0 and j == 0 else 0.25 * (i + 1) * (j + 1)
                                  for j, n in enumerate(names)}) for i in range(bars)]
    return [row for rec in records for row in tables.FEATURE_BARS.rows_of(rec)]


def sample_rows() -> dict[str, list[Row]]:
    def rows(table: tables.TableSpec, records: list) -> list[Row]:
        return [row for rec in records for row in table.rows_of(rec)]

    return {
        "bbo": bbo_rows(50),
        "mbp10": rows(tables.MBP10, samples.mbp10_snapshots(5)),
        "book_trades": rows(tables.BOOK_TRADES, samples.book_trades(20)),
        "book_anomalies": [(10**18 + 1234, 1, 1, 5, 10**18 + 1234, 10**18, "gap", "seq 4 -> 6", 1)],
        "exchange_trades": rows(tables.EXCHANGE_TRADES, samples.exchange_trades(20)),
        "exchange_quotes": rows(tables.EXCHANGE_QUOTES, samples.exchange_quotes(20)),
        "feature_vectors": feature_rows(("ret", "vol")),
        "regime_signals": [(10**18, "1000", 10**9, "trend", "up", 0.9, False)],
    }


def test_new_rows_are_counted_and_kept_until_commit(store: RowStore) -> None:
    assert store.write_batch({"bbo": bbo_rows(100)}) == {"bbo": 100}
    store.commit()
    assert store.count("bbo") == 100


def test_a_replayed_batch_inserts_nothing(store: RowStore) -> None:
    rows = bbo_rows(100)
    store.write_batch({"bbo": rows})
    store.commit()
    assert store.write_batch({"bbo": rows}) == {"bbo": 0}
    store.commit()
    assert store.count("bbo") == 100


def test_a_partly_replayed_batch_inserts_only_the_new_rows(store: RowStore) -> None:
    store.write_batch({"bbo": bbo_rows(60)})
    store.commit()
    assert store.write_batch({"bbo": bbo_rows(100)}) == {"bbo": 40}
    store.commit()
    assert store.count("bbo") == 100


def test_duplicates_inside_one_batch_are_stored_once(store: RowStore) -> None:
    rows = bbo_rows(10)
    assert store.write_batch({"bbo": rows + rows[:4]}) == {"bbo": 10}
    store.commit()
    assert store.count("bbo") == 10


def test_rollback_forgets_the_batch(store: RowStore) -> None:
    store.write_batch({"bbo": bbo_rows(10)})
    store.rollback()
    assert store.count("bbo") == 0


def test_every_table_stores_exactly_what_it_was_given(store: RowStore) -> None:
    batch = sample_rows()
    assert store.write_batch(batch) == {name: len(rows) for name, rows in batch.items()}
    store.commit()
    for name, rows in batch.items():
        table = tables.BY_NAME[name]
        expected = sorted((truncate_ts(table, r) for r in rows), key=lambda r: repr(table.key_of(r)))
        got = sorted(store.fetch(name), key=lambda r: repr(table.key_of(r)))
        assert got == expected, name


def test_a_new_connection_sees_committed_rows(store_factory: Callable[[], RowStore]) -> None:
    first = store_factory()
    first.write_batch({"bbo": bbo_rows(5)})
    first.commit()
    first.close()
    assert store_factory().count("bbo") == 5


def test_a_replay_after_a_rolled_back_replay_still_merges(store: RowStore) -> None:
    rows = bbo_rows(20)
    store.write_batch({"bbo": rows[:10]})
    store.commit()
    assert store.write_batch({"bbo": rows}) == {"bbo": 10}
    store.rollback()
    assert store.write_batch({"bbo": rows}) == {"bbo": 10}
    store.commit()
    assert store.count("bbo") == 20


def test_feature_vectors_of_two_name_sets_coexist_and_their_sets_are_stored(store: RowStore) -> None:
    first, second = feature_rows(("ret", "vol")), feature_rows(("vol", "ret", "mid"), instrument="2000")

    inserted = store.write_batch({"feature_vectors": first + second})
    store.commit()

    assert inserted == {"feature_vectors": 6}
    assert store.feature_sets() == {tables.feature_set_id(("ret", "vol")): ("ret", "vol"),
                                    tables.feature_set_id(("vol", "ret", "mid")): ("vol", "ret", "mid")}
    assert store.fetch("feature_vectors") == sorted(first + second, key=lambda r: (r[1], r[2], r[0]))


def test_replayed_feature_vectors_insert_nothing(store: RowStore) -> None:
    rows = feature_rows(("ret", "vol"), bars=5)
    store.write_batch({"feature_vectors": rows[:3]})
    store.commit()

    inserted = store.write_batch({"feature_vectors": rows})
    store.commit()

    assert inserted == {"feature_vectors": 2}
    assert store.count("feature_vectors") == 5 and len(store.feature_sets()) == 1


def test_a_rolled_back_feature_set_is_stored_again_by_the_next_batch(store_factory: Callable[[], RowStore]) -> None:
    store = store_factory()
    rows = feature_rows(("ret", "vol"))
    store.write_batch({"feature_vectors": rows})
    store.rollback()
    assert store.feature_sets() == {}

    assert store.write_batch({"feature_vectors": rows}) == {"feature_vectors": 3}
    store.commit()
    again = store_factory()  # a new connection (as after an outage) knows no set yet, and finds them stored
    assert again.write_batch({"feature_vectors": feature_rows(("ret", "vol"), start=3)}) == {"feature_vectors": 3}
    again.commit()

    assert again.count("feature_vectors") == 6 and list(again.feature_sets().values()) == [("ret", "vol")]


def test_a_vector_of_an_unknown_set_without_its_names_is_refused(store: RowStore) -> None:
    bare = tuple(feature_rows(("never", "stored"))[0])  # a plain row: no names to store its set with

    with pytest.raises(StoreError, match="is not stored"):
        store.write_batch({"feature_vectors": [bare]})
    store.rollback()

    assert store.count("feature_vectors") == 0


def test_rows_encoded_ahead_are_stored_and_rows_added_after_the_encoding_are_not_lost(store: RowStore) -> None:
    ahead = copybin.Encoded(bbo_rows(50), tables.BBO)
    grown = copybin.Encoded(bbo_rows(30, start=50), tables.BBO)
    grown.extend(bbo_rows(20, start=80))  # the batch grew after it was encoded (a backpressure wait)

    first = store.write_batch({"bbo": ahead})
    second = store.write_batch({"bbo": grown})
    store.commit()

    assert (first, second) == ({"bbo": 50}, {"bbo": 50}) and not grown.current
    assert store.fetch("bbo") == sorted((truncate_ts(tables.BBO, r) for r in bbo_rows(100)), key=tables.BBO.key_of)
