"""A two-state Gaussian hidden Markov model, vectorized over many series at once.

:func:`fit_hmm` estimates the parameters by Baum–Welch (scaled forward-backward, EM) for K series in one go
(observations (T, K)); :func:`filter_step` is the online forward filter: P(state_t | o_1..o_t) from the previous
filtered probabilities and the new observation, for every series at once. State 0 always has the lower mean.
"""

from __future__ import annotations

import logging
import math

import msgspec
import numpy as np

from processors.regime.errors import FitError

logger = logging.getLogger(__name__)
LOG_2PI = math.log(2.0 * math.pi)


class HmmParams(msgspec.Struct, frozen=True, kw_only=True):
    """Parameters of one two-state Gaussian HMM (state 0: the lower mean)."""

    means: tuple[float, float]
    variances: tuple[float, float]
    transition: tuple[tuple[float, float], tuple[float, float]]  # transition[i][j] = P(j at t+1 | i at t)
    start: tuple[float, float] = (0.5, 0.5)


class HmmArrays:
    """Parameters of K models as arrays: means, variances (K, 2), transition (K, 2, 2), start (K, 2)."""

    def __init__(self, means: np.ndarray, variances: np.ndarray, transition: np.ndarray, start: np.ndarray) -> None:
        self.means, self.variances, self.transition, self.start = means, variances, transition, start

    @classmethod
    def of(cls, p: HmmParams, k: int) -> HmmArrays:
        return cls(np.tile(np.array(p.means, dtype=np.float64), (k, 1)),
                   np.tile(np.array(p.variances, dtype=np.float64), (k, 1)),
                   np.tile(np.array(p.transition, dtype=np.float64), (k, 1, 1)),
                   np.tile(np.array(p.start, dtype=np.float64), (k, 1)))

    def params(self, i: int) -> HmmParams:
        m, v, a, s = self.means[i], self.variances[i], self.transition[i], self.start[i]
        return HmmParams(means=(float(m[0]), float(m[1])), variances=(float(v[0]), float(v[1])),
                         transition=((float(a[0, 0]), float(a[0, 1])), (float(a[1, 0]), float(a[1, 1]))),
                         start=(float(s[0]), float(s[1])))


def likelihood(obs: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """Gaussian densities of ``obs`` (...,) under both states: (..., 2)."""
    d = obs[..., None] - means
    return np.exp(-0.5 * (d * d / variances + np.log(variances) + LOG_2PI))


def filter_step(prob: np.ndarray, transition: np.ndarray, obs: np.ndarray, means: np.ndarray,
                variances: np.ndarray) -> np.ndarray:
    """Filtered state probabilities (K, 2) after observing ``obs`` (K,), from the previous ones ``prob``."""
    predicted = np.einsum("ki,kij->kj", prob, transition)
    post = predicted * likelihood(obs, means, variances)
    total = post.sum(axis=1, keepdims=True)
    return np.where(total > 0.0, post / np.where(total > 0.0, total, 1.0), predicted)


def fit_hmm(obs: np.ndarray, iterations: int = 50, min_variance: float = 1e-3, stay: float = 0.98) -> HmmArrays:
    """Baum–Welch estimates for each column of ``obs`` (T, K); ``min_variance`` keeps a state from collapsing
    onto a single value (e.g. a floor of the observations)."""
    if obs.ndim != 2 or obs.shape[0] < 10 or not np.all(np.isfinite(obs)):
        raise FitError(f"need finite observations (T >= 10, K) to fit; got shape {obs.shape}")
    hmm = _initial(obs, min_variance, stay)
    for _ in range(iterations):
        gamma, xi = _expectations(obs, hmm)
        hmm = _maximize(obs, gamma, xi, min_variance)
    return _ordered(hmm)


def _initial(obs: np.ndarray, min_variance: float, stay: float) -> HmmArrays:
    lo, hi = np.percentile(obs, 25, axis=0), np.percentile(obs, 75, axis=0)
    spread = np.maximum(obs.std(axis=0), math.sqrt(min_variance))
    hi = np.where(hi > lo, hi, lo + spread)
    k = obs.shape[1]
    var = np.maximum(obs.var(axis=0), min_variance)
    a = np.array([[stay, 1.0 - stay], [1.0 - stay, stay]])
    return HmmArrays(np.stack([lo, hi], axis=1), np.stack([var, var], axis=1), np.tile(a, (k, 1, 1)),
                     np.full((k, 2), 0.5))


def _expectations(obs: np.ndarray, hmm: HmmArrays) -> tuple[np.ndarray, np.ndarray]:
    """State posteriors gamma (T, K, 2) and expected transition counts xi summed over time (K, 2, 2)."""
    t_len, k = obs.shape
    b = likelihood(obs, hmm.means[None], hmm.variances[None]) + 1e-300
    alpha = np.empty((t_len, k, 2))
    scale = np.empty((t_len, k))
    a = hmm.start * b[0]
    for t in range(t_len):
        if t:
            a = np.einsum("ki,kij->kj", alpha[t - 1], hmm.transition) * b[t]
        scale[t] = a.sum(axis=1)
        alpha[t] = a / scale[t][:, None]
    beta = np.ones((t_len, k, 2))
    xi = np.zeros((k, 2, 2))
    for t in range(t_len - 2, -1, -1):
        nb = b[t + 1] * beta[t + 1]
        beta[t] = np.einsum("kij,kj->ki", hmm.transition, nb) / scale[t + 1][:, None]
        xi += alpha[t][:, :, None] * hmm.transition * nb[:, None, :] / scale[t + 1][:, None, None]
    gamma = alpha * beta
    gamma /= gamma.sum(axis=2, keepdims=True)
    return gamma, xi


def _maximize(obs: np.ndarray, gamma: np.ndarray, xi: np.ndarray, min_variance: float) -> HmmArrays:
    weight = gamma.sum(axis=0) + 1e-12
    means = (gamma * obs[:, :, None]).sum(axis=0) / weight
    d = obs[:, :, None] - means[None]
    variances = (gamma * d * d).sum(axis=0) / weight + min_variance
    transition = xi / np.maximum(xi.sum(axis=2, keepdims=True), 1e-12)
    return HmmArrays(means, variances, transition, gamma[0])


def _ordered(hmm: HmmArrays) -> HmmArrays:
    """Swap the states of the models whose state 0 has the higher mean."""
    swap = hmm.means[:, 0] > hmm.means[:, 1]
    idx = np.where(swap[:, None], [1, 0], [0, 1])
    rows = np.arange(len(swap))[:, None]
    transition = hmm.transition[rows[:, :, None], idx[:, :, None], idx[:, None, :]]
    return HmmArrays(hmm.means[rows, idx], hmm.variances[rows, idx], transition, hmm.start[rows, idx])
