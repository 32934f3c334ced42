"""Generated series with known regimes: volatility switching between two levels, and returns switching between
positive and negative autocorrelation, at known bars."""

from __future__ import annotations

import numpy as np


def switch_points(rng: np.random.Generator, bars: int, shortest: int, longest: int) -> np.ndarray:
    """Regime index (0/1) per bar: segments of random length in [shortest, longest], starting with 0."""
    states = np.empty(bars, dtype=np.int64)
    t, s = 0, 0
    while t < bars:
        length = int(rng.integers(shortest, longest + 1))
        states[t: t + length] = s
        t += length
        s = 1 - s
    return states


def two_vol_regimes(seed: int, bars: int, instruments: int, calm: float = 1e-4, ratio: float = 3.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Returns (bars, instruments) and the true volatility regime (bars, instruments): 1 = turbulent."""
    rng = np.random.default_rng(seed)
    truth = np.stack([switch_points(rng, bars, 150, 500) for _ in range(instruments)], axis=1)
    sigma = np.where(truth == 1, calm * ratio, calm)
    return rng.standard_normal((bars, instruments)) * sigma, truth


def two_trend_regimes(seed: int, bars: int, instruments: int, phi: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """AR(1) returns with coefficient +phi (trending, 1) or -phi (mean-reverting, 0) by segment."""
    rng = np.random.default_rng(seed)
    truth = np.stack([switch_points(rng, bars, 400, 800) for _ in range(instruments)], axis=1)
    coef = np.where(truth == 1, phi, -phi)
    noise = rng.standard_normal((bars, instruments)) * 1e-4
    r = np.zeros((bars, instruments))
    for t in range(1, bars):
        r[t] = coef[t] * r[t - 1] + noise[t]
    return r, truth
