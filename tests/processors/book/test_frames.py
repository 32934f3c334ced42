"""decode_frame gives exactly what msgspec gives (or its error) for every value; the compiled reader's columns feed
the book to the same result as msgspec's lists."""

from __future__ import annotations

import array
import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest

from processors.book import frames
from processors.book.frames import decode_frame
from tests.processors.book import bookdata as bd
from topics.codec import decode, encode
from topics.errors import DecodeError
from topics.records import MboFrame, MboRecord

pytestmark = pytest.mark.unit

parse: Any = pytest.importorskip("processors.book._framejson").parse_mbo_frame

SIGNED = {"price", "ts_in_delta"}
INT_COLUMNS = ("ts_recv", "ts_event", "price", "size", "channel_id", "order_id", "flags", "ts_in_delta", "sequence")


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="processors.book")


def real_frames(name: str, size: int = 250) -> list[bytes]:
    """The file's records in frames of ``size`` per instrument, encoded as the producers do."""
    by_book: dict[tuple[int, int], list[MboRecord]] = {}
    for r in bd.mbo_records(name):
        by_book.setdefault((r.publisher_id, r.instrument_id), []).append(r)
    return [encode(MboFrame.from_records(rows[i:i + size], symbol="X" if i % 2 else None))
            for rows in by_book.values() for i in range(0, len(rows), size)]


def plain(frame: MboFrame) -> dict[str, Any]:
    """The frame's fields with array columns as lists, for comparison with msgspec's."""
    return {name: list(v) if isinstance(v, array.array) else v
            for name, v in ((n, getattr(frame, n)) for n in MboFrame.__struct_fields__)}


def outcome(value: bytes) -> tuple[str, Any]:
    """("ok", fields) or ("error", message) of decoding ``value`` through msgspec alone."""
    try:
        return "ok", plain(decode(MboFrame, value))
    except DecodeError as e:
        return "error", str(e)


def assert_same_as_msgspec(value: bytes) -> None:
    expected = outcome(value)
    fast = parse(value)
    if fast is not None:
        assert expected == ("ok", plain(fast)), value
    try:
        got: tuple[str, Any] = "ok", plain(decode_frame(value))
    except DecodeError as e:
        got = "error", str(e)
    assert got == expected, value


@pytest.mark.parametrize("name", [bd.ESH4_1225, bd.ESM4, "dbn/test_data.mbo.v3.dbn",
                                  "databento-python/XNAS.ITCH/test_data.mbo.dbn.zst"])
def test_real_frames_read_equal_to_msgspec(name: str) -> None:
    # Arrange
    if not (bd.DATA / name).exists():
        pytest.skip(f"{name} is not in ../shared/data")
    values = real_frames(name)

    # Act
    read = [parse(v) for v in values]

    # Assert
    assert all(f is not None for f in read), "the producers' own frames must take the compiled path"
    for value, frame in zip(values, read, strict=True):
        assert plain(frame) == plain(decode(MboFrame, value))
        for column in INT_COLUMNS:
            assert getattr(frame, column).typecode == ("q" if column in SIGNED else "Q")


def sample(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "publisher_id": 1, "instrument_id": 17077, "symbol": "ESH4", "ts_recv": [1, 2], "ts_event": [1, 2],
        "action": "AC", "side": "BA", "price": [4799000000000, -5], "size": [2, 6], "channel_id": [0, 3],
        "order_id": [6412777162812, 18446744073709551615], "flags": [40, 168], "ts_in_delta": [0, -7],
        "sequence": [682, 683], "ts_sent": 0,
    }
    fields.update(changes)
    return fields


class Tok(str):
    """A JSON token written as it is (not quoted)."""


def to_json(fields: dict[str, Any], sep: str = ",", colon: str = ":") -> bytes:
    def value(v: Any) -> str:
        if v is None:
            return "null"
        if isinstance(v, str) and not isinstance(v, Tok):
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + sep.join(map(str, v)) + "]"
        return str(v)
    return ("{" + sep.join(f'"{k}"{colon}{value(v)}' for k, v in fields.items()) + "}").encode()


EDGE_CASES = {
    "bounds": sample(ts_recv=[0, 18446744073709551615], price=[-9223372036854775808, 9223372036854775807],
                     size=[0, 4294967295], ts_in_delta=[-2147483648, 2147483647], publisher_id=65535,
                     instrument_id=4294967295, ts_sent=18446744073709551615, sequence=[0, 4294967295],
                     channel_id=[0, 255], flags=[0, 255]),
    "beyond uint64": sample(ts_recv=[1, 18446744073709551616]),
    "beyond int64": sample(price=[1, 9223372036854775808]),
    "below int64": sample(price=[1, -9223372036854775809]),
    "size beyond uint32": sample(size=[1, 4294967296]),
    "negative size": sample(size=[1, -1]),
    "delta beyond int32": sample(ts_in_delta=[0, 2147483648]),
    "flags beyond uint8": sample(flags=[0, 256]),
    "publisher beyond uint16": sample(publisher_id=65536),
    "minus zero": sample(size=[1, "-0"]),
    "leading zero": sample(size=[1, "01"]),
    "fraction": sample(size=[1, "2.0"]),
    "exponent": sample(size=[1, "2e3"]),
    "null symbol": sample(symbol=None),
    "scalar fraction": sample(instrument_id=Tok("17077.0")),
    "negative publisher": sample(publisher_id=-1),
    "no symbol, no ts_sent": {k: v for k, v in sample().items() if k not in ("symbol", "ts_sent")},
    "missing column": {k: v for k, v in sample().items() if k != "flags"},
    "short column": sample(sequence=[1]),
    "empty frame": sample(action="", side="", **{c: [] for c in INT_COLUMNS}),
    "bad action letter": sample(action="AX"),
    "bad side letter": sample(side="BZ"),
    "lower-case letters": sample(action="ac"),
    "escaped letter": sample(action="A\\u0043"),
    "escaped symbol": sample(symbol='ES\\"H4'),
    "unicode symbol": sample(symbol="ESH4\u00e9"),
    "unknown key": {**sample(), "venue": 3},
    "string where a column is": sample(price="4799"),
    "null column": sample(price=None),
    "boolean": sample(publisher_id=Tok("true")),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_agree_with_msgspec(case: str) -> None:
    fields = EDGE_CASES[case]
    for value in (to_json(fields), to_json(fields, sep=" ,\n\t", colon=" : "),
                  to_json(dict(reversed(list(fields.items()))))):
        assert_same_as_msgspec(value)


def test_boundary_values_take_the_compiled_path() -> None:
    frame = parse(to_json(EDGE_CASES["bounds"]))
    assert frame is not None
    assert frame.price.tolist() == [-9223372036854775808, 9223372036854775807]
    assert frame.ts_recv.tolist() == [0, 18446744073709551615]
    assert frame.ts_sent == 18446744073709551615


def test_duplicate_key_is_left_to_msgspec() -> None:
    value = to_json(sample())[:-1] + b',"publisher_id":2}'
    assert parse(value) is None
    assert_same_as_msgspec(value)


def mutations(value: bytes, rng: random.Random) -> Iterator[bytes]:
    """Values near ``value``: bytes changed, dropped, doubled, cut, whitespace added."""
    for _ in range(400):
        i = rng.randrange(len(value))
        kind = rng.randrange(5)
        if kind == 0:
            yield value[:i] + bytes([rng.choice(b'0123456789-.,:[]{}" eE\\nulAZ\xc3\x00')]) + value[i + 1:]
        elif kind == 1:
            yield value[:i] + value[i + 1:]
        elif kind == 2:
            yield value[:i] + value[i:i + 1] * 2 + value[i + 1:]
        elif kind == 3:
            yield value[:i]
        else:
            yield value[:i] + rng.choice((b" ", b"\n", b"\t", b"\r", b"\x0b")) + value[i:]


def test_mutated_values_agree_with_msgspec() -> None:
    # Arrange
    rng = random.Random(20261126)
    seeds = [to_json(sample()), to_json(EDGE_CASES["bounds"]), to_json(sample(symbol=None))]

    # Act / Assert: whatever the reader accepts, msgspec decodes to the same frame; whatever it refuses to take,
    # decode_frame still answers exactly as msgspec does
    taken = 0
    for seed in seeds:
        for value in mutations(seed, rng):
            assert_same_as_msgspec(value)
            taken += parse(value) is not None
    assert taken > 0  # some mutations (whitespace) stay valid and are read by the compiled path


def test_decode_frame_without_the_compiled_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    value = to_json(sample())
    monkeypatch.setattr(frames, "_parse", None)
    frame = decode_frame(value)
    assert type(frame.price) is list
    assert plain(frame) == plain(decode(MboFrame, value))


def test_bytearray_and_memoryview_go_through_msgspec() -> None:
    value = to_json(sample())
    for other in (bytearray(value), memoryview(value)):
        assert parse(other) is None
        assert plain(decode_frame(other)) == plain(decode(MboFrame, value))  # type: ignore[arg-type]


def test_array_columns_apply_as_lists_do(book_cls: Any) -> None:
    # Arrange
    if not (bd.DATA / bd.ESH4_1225).exists():
        pytest.skip(f"{bd.ESH4_1225} is not in ../shared/data")
    values = real_frames(bd.ESH4_1225, size=97)
    by_lists, by_arrays = None, None
    results = []

    # Act
    for read in (lambda v: decode(MboFrame, v), parse):
        book, points, changes = None, [], []
        for value in values:
            frame = read(value)
            book = book or book_cls(frame.publisher_id, frame.instrument_id)
            points.append(book.apply_frame(frame, None, changes))
        results.append((points, changes, book.to_state(), book.stats))
    by_lists, by_arrays = results

    # Assert
    assert by_arrays == by_lists
    assert sum(map(len, by_lists[0])) > 1000


def test_array_value_beyond_its_field_applies_nothing() -> None:
    fast = pytest.importorskip("processors.book._fastbook")
    book = fast.Book(1, 17077)
    cols = {c: array.array("q" if c in SIGNED else "Q", [1, 2]) for c in INT_COLUMNS}
    cols["size"] = array.array("Q", [1, 1 << 63])
    with pytest.raises(OverflowError, match="index 1"):
        book.apply_frame_columns("AA", "BB", cols["price"], cols["size"], cols["order_id"], cols["flags"],
                                 cols["sequence"], cols["channel_id"], cols["ts_recv"], cols["ts_event"])
    assert book.order_count == 0
    assert book.stats.records == 0
