"""Checkpoints: named numpy arrays plus plain metadata, to and from bytes (msgspec MessagePack).

Components keep their state as arrays whose first axis is the instrument slot (:class:`SlotArrays`); growing the
number of slots pads every such array with the component's fill value, so a new instrument starts empty.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from processors.features.errors import StateError

Arrays = dict[str, np.ndarray]


class ArrayBlob(msgspec.Struct, array_like=True, frozen=True):
    dtype: str
    shape: list[int]
    data: bytes


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    kind: str  # which engine wrote it
    version: int
    meta: dict[str, Any]
    arrays: dict[str, ArrayBlob]


def pack(kind: str, version: int, meta: dict[str, Any], arrays: Arrays) -> bytes:
    """Arrays and metadata as bytes; the arrays are copied as raw little-endian buffers."""
    blobs = {
        k: ArrayBlob(a.dtype.str, list(a.shape), np.ascontiguousarray(a).tobytes()) for k, a in arrays.items()
    }
    return msgspec.msgpack.encode(Checkpoint(kind=kind, version=version, meta=meta, arrays=blobs))


def unpack(blob: bytes, kind: str, version: int) -> tuple[dict[str, Any], Arrays]:
    """The metadata and arrays of :func:`pack`; raises :class:`StateError` for another kind or version."""
    try:
        cp = msgspec.msgpack.decode(blob, type=Checkpoint)
    except msgspec.DecodeError as e:
        raise StateError(f"not a checkpoint: {e}") from None
    if cp.kind != kind or cp.version != version:
        raise StateError(f"checkpoint is {cp.kind!r} v{cp.version}; expected {kind!r} v{version}")
    arrays = {k: np.frombuffer(b.data, dtype=np.dtype(b.dtype)).reshape(b.shape).copy() for k, b in cp.arrays.items()}
    return cp.meta, arrays


class SlotArrays:
    """A component whose state is arrays with the instrument slot as first axis.

    Subclasses call :meth:`_slot_array` in ``__init__`` for each array; :meth:`state`, :meth:`load` and
    :meth:`grow` then handle them all by name.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._fills: dict[str, float] = {}

    def _slot_array(self, name: str, tail: tuple[int, ...], dtype: Any, fill: float) -> np.ndarray:
        arr = np.full((self.capacity, *tail), fill, dtype=dtype)
        self._fills[name] = fill
        setattr(self, name, arr)
        return arr

    def state(self, prefix: str) -> Arrays:
        return {f"{prefix}{name}": getattr(self, name) for name in self._fills}

    def load(self, arrays: Arrays, prefix: str) -> None:
        for name in self._fills:
            key = f"{prefix}{name}"
            if key not in arrays:
                raise StateError(f"checkpoint lacks array {key}")
            got, want = arrays[key], getattr(self, name)
            if got.shape[1:] != want.shape[1:] or got.dtype != want.dtype:
                raise StateError(f"array {key} is {got.dtype}{got.shape}; expected {want.dtype}(*, {want.shape[1:]})")
        self.capacity = arrays[f"{prefix}{next(iter(self._fills))}"].shape[0] if self._fills else self.capacity
        for name in self._fills:
            setattr(self, name, arrays[f"{prefix}{name}"])

    def grow(self, capacity: int) -> None:
        """Room for ``capacity`` slots; the new ones hold the fill values."""
        if capacity <= self.capacity:
            return
        for name, fill in self._fills.items():
            old = getattr(self, name)
            new = np.full((capacity, *old.shape[1:]), fill, dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)
        self.capacity = capacity
