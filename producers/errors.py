"""Exceptions of the producers package: one base for every producer failure."""

from __future__ import annotations


class ProducerError(Exception):
    """Base of every error raised by :mod:`producers`."""
