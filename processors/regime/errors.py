"""Exceptions of the regime detectors: one base, :class:`RegimeError`, for everything they raise."""

from __future__ import annotations


class RegimeError(Exception):
    """Base of every error raised by :mod:`processors.regime`."""


class ConfigError(RegimeError, ValueError):
    """A :class:`~processors.regime.detector.RegimeConfig` that cannot work."""


class StateError(RegimeError, ValueError):
    """A checkpoint that cannot be restored."""


class FitError(RegimeError, ValueError):
    """Observations an HMM cannot be fitted to (too few, or not finite)."""
