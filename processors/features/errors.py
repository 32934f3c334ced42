"""Exceptions of the feature engine: one base, :class:`FeatureError`, for everything it raises."""

from __future__ import annotations


class FeatureError(Exception):
    """Base of every error raised by :mod:`processors.features`."""


class ConfigError(FeatureError, ValueError):
    """A :class:`~processors.features.config.FeatureConfig` that cannot work (bad windows, spans, lags, intervals)."""


class StateError(FeatureError, ValueError):
    """A checkpoint that cannot be restored (wrong kind or version, or inconsistent arrays)."""


class UnknownRecordError(FeatureError, TypeError):
    """A record type the engine does not take."""


class UnknownFeatureError(FeatureError, KeyError):
    """A feature name that is not in the catalog."""
