"""Checkpoints of the regime detector: named numpy arrays plus plain metadata, as MessagePack bytes."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from processors.regime.errors import StateError


class _Blob(msgspec.Struct, array_like=True, frozen=True):
    dtype: str
    shape: list[int]
    data: bytes


class _Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    version: int
    meta: dict[str, Any]
    arrays: dict[str, _Blob]


def pack(kind: str, version: int, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    blobs = {k: _Blob(a.dtype.str, list(a.shape), np.ascontiguousarray(a).tobytes()) for k, a in arrays.items()}
    return msgspec.msgpack.encode(_Checkpoint(kind=kind, version=version, meta=meta, arrays=blobs))


def unpack(blob: bytes, kind: str, version: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        cp = msgspec.msgpack.decode(blob, type=_Checkpoint)
    except msgspec.DecodeError as e:
        raise StateError(f"not a checkpoint: {e}") from None
    if cp.kind != kind or cp.version != version:
        raise StateError(f"checkpoint is {cp.kind!r} v{cp.version}; expected {kind!r} v{version}")
    return cp.meta, {k: np.frombuffer(b.data, np.dtype(b.dtype)).reshape(b.shape).copy() for k, b in cp.arrays.items()}
