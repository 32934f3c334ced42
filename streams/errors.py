"""Exceptions of the streams package: one base, :class:`StreamsError`, and the few cases callers tell apart."""

from __future__ import annotations


class StreamsError(Exception):
    """Base of every error raised by :mod:`streams`."""


class DeliveryError(StreamsError):
    """An output or checkpoint could not be written to Kafka; the worker must stop rather than commit past it."""


class StateError(StreamsError):
    """A checkpoint cannot be read back (corrupt, or written by an incompatible version)."""


class RunError(StreamsError):
    """``orderflow run`` could not start or supervise a part of the pipeline."""
