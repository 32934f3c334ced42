"""Regime detection per instrument and bar (pure: no I/O, no clock): a volatility regime from a two-state
Gaussian HMM on log realized volatility (online forward filter, parameters fitted by Baum–Welch), and a
trend / mean-reversion state from the variance ratio, each with a probability, changes as events.
See docs/regimes.md."""

from processors.regime.detector import TREND_STATES, VOL_STATES, RegimeConfig, RegimeDetector, RegimeUpdate
from processors.regime.errors import ConfigError, FitError, RegimeError, StateError
from processors.regime.hmm import HmmArrays, HmmParams, filter_step, fit_hmm
from processors.regime.trend import normal_cdf, variance_ratio

__all__ = [
    "TREND_STATES",
    "VOL_STATES",
    "ConfigError",
    "FitError",
    "HmmArrays",
    "HmmParams",
    "RegimeConfig",
    "RegimeDetector",
    "RegimeError",
    "RegimeUpdate",
    "StateError",
    "filter_step",
    "fit_hmm",
    "normal_cdf",
    "variance_ratio",
]
