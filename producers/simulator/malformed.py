"""Malformed messages for dead-letter tests: bytes on the MBO topic that do not decode into a valid frame."""

from __future__ import annotations

import random

import msgspec

from topics import codec
from topics.records import MboFrame, MboRecord

KINDS = ("not-json", "truncated", "bad-action", "length-mismatch", "wrong-type", "empty")


def malformed_value(rng: random.Random, instrument_id: int, records: list[MboRecord]) -> tuple[bytes, bytes, str]:
    """(key, value, kind) of one malformed message, derived from the last event's ``records``."""
    kind = KINDS[rng.randrange(len(KINDS))] if records else "not-json"
    key = str(instrument_id).encode()
    if kind == "not-json":
        return key, b"\xff" + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 48))), kind
    if kind == "empty":
        return key, b"", kind
    frame = MboFrame.from_records(records)
    if kind == "truncated":
        data = codec.encode(frame)
        return key, data[: max(1, len(data) // 2)], kind
    doc = msgspec.json.decode(codec.encode(frame))
    if kind == "bad-action":
        i = rng.randrange(len(frame))
        doc["action"] = doc["action"][:i] + "X" + doc["action"][i + 1 :]
    elif kind == "length-mismatch":
        doc["price"] = doc["price"] + [doc["price"][-1]]
    else:  # wrong-type
        doc["size"] = [str(size) for size in doc["size"]]
    return key, msgspec.json.encode(doc), kind
