"""Trend vs mean reversion from the variance ratio of returns (Lo & MacKinlay 1988), vectorized over instruments.

VR(q) = Var(q-bar returns) / (q · Var(1-bar returns)) over the last n returns, with overlapping q-bar sums and
Lo–MacKinlay's unbiased denominators. Under a random walk VR = 1 and z = (VR − 1) / √(2(2q − 1)(q − 1) / (3qn)) is
standard normal; VR > 1 (positive autocorrelation) is trending, VR < 1 mean-reverting.
"""

from __future__ import annotations

import numpy as np


def variance_ratio(returns: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """VR and its z-statistic for each row of ``returns`` (k, n); NaN where the returns are constant."""
    n = returns.shape[1]
    mu = returns.mean(axis=1, keepdims=True)
    var1 = ((returns - mu) ** 2).sum(axis=1) / (n - 1)
    c = np.concatenate([np.zeros((returns.shape[0], 1)), np.cumsum(returns, axis=1)], axis=1)
    sums = c[:, q:] - c[:, :-q]
    m = q * (n - q + 1) * (1.0 - q / n)
    varq = ((sums - q * mu) ** 2).sum(axis=1) / m
    with np.errstate(divide="ignore", invalid="ignore"):
        vr = np.where(var1 > 0.0, varq / var1, np.nan)  # m holds the factor q: varq is per bar already
    z = (vr - 1.0) / np.sqrt(2.0 * (2 * q - 1) * (q - 1) / (3.0 * q * n))
    return vr, z


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """Φ(z) by Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7); NaN stays NaN."""
    x = np.abs(z) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-x * x)
    return 0.5 * (1.0 + np.sign(z) * erf)
