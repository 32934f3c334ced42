"""JSON codec for the records in :mod:`topics.records`.

Values are msgspec JSON so that ``kafka-console-consumer`` shows them readably. Decoding validates types and
ranges; anything wrong raises :class:`topics.errors.DecodeError` naming the field and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec

from topics import records
from topics.errors import DecodeError

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder[Any]] = {}
_frame_decoders: dict[type, msgspec.json.Decoder[Any]] = {}
_MISSING = re.compile(r"missing required field `([^`]+)`")
_PATH = re.compile(r"^(?P<reason>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)

RECORD_TYPES: dict[str, type] = {
    name: obj
    for name, obj in vars(records).items()
    if isinstance(obj, type) and issubclass(obj, msgspec.Struct) and obj.__module__ == records.__name__
}


def encode(record: msgspec.Struct) -> bytes:
    """JSON bytes of ``record``."""
    return _encoder.encode(record)


def encode_frame(frame: Sequence[msgspec.Struct]) -> bytes:
    """JSON bytes of a frame: a JSON array of records (the value of a framed topic's message)."""
    return _encoder.encode(frame)


def decoder(record_type: type[T]) -> msgspec.json.Decoder[T]:
    """A cached, reusable decoder for ``record_type``."""
    dec = _decoders.get(record_type)
    if dec is None:
        dec = _decoders[record_type] = msgspec.json.Decoder(record_type)
    return dec


def frame_decoder(record_type: type[T]) -> msgspec.json.Decoder[list[T] | T]:
    """A cached decoder for a framed topic's values: one ``record_type`` object, or a JSON array of them."""
    dec = _frame_decoders.get(record_type)
    if dec is None:
        dec = _frame_decoders[record_type] = msgspec.json.Decoder(list[record_type] | record_type)  # type: ignore
    return dec


def decode_records(record_type: type[T], data: bytes | bytearray | memoryview | str) -> list[T]:
    """The records of a framed topic's value (``TopicSpec.framed``): a frame ``[{...}, {...}]`` or one record
    ``{...}``; raises :class:`DecodeError` naming what was wrong (``$[3].price`` for a frame's fourth record)."""
    value = _decode(frame_decoder(record_type), record_type.__name__, data)
    return value if type(value) is list else [value]


def decode_message(record_type: type[T], data: bytes | bytearray | memoryview | str, framed: bool) -> list[T]:
    """The records of one message of a topic: :func:`decode_records` when the topic is ``framed``, else the one
    record :func:`decode` gives."""
    return decode_records(record_type, data) if framed else [decode(record_type, data)]


def decode(record_type: type[T], data: bytes | bytearray | memoryview | str) -> T:
    """Decode and validate ``data`` as ``record_type``; raises :class:`DecodeError` naming what was wrong."""
    return _decode(decoder(record_type), record_type.__name__, data)


def _decode(dec: msgspec.json.Decoder[Any], name: str, data: bytes | bytearray | memoryview | str) -> Any:
    if data is None:
        raise DecodeError(name, "no value (null message)")
    try:
        value = dec.decode(data)
    except msgspec.ValidationError as e:
        reason, path = _split(str(e))
        raise DecodeError(name, reason, path) from e
    except msgspec.DecodeError as e:
        raise DecodeError(name, f"not valid JSON: {e}") from e
    if isinstance(value, records.MboFrame):
        problem = value.column_error()
        if problem is not None:
            path, _, reason = problem.partition(": ")
            raise DecodeError(name, reason, path)
    return value


def _split(message: str) -> tuple[str, str | None]:
    match = _PATH.match(message)
    if match is None:  # pragma: no cover - the pattern matches any string
        return message, None
    reason, path = match.group("reason"), match.group("path")
    missing = _MISSING.search(reason)
    if missing is not None:  # msgspec names the missing field in the reason, at its parent's path
        path = f"{path or '$'}.{missing.group(1)}"
    return reason, path


def decode_by_name(type_name: str, data: bytes) -> Any:
    """Decode ``data`` as the record type called ``type_name`` (as named in the topic catalog)."""
    try:
        record_type = RECORD_TYPES[type_name]
    except KeyError:
        raise DecodeError(type_name, f"unknown record type; known: {', '.join(RECORD_TYPES)}") from None
    return decode(record_type, data)
