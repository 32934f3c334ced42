"""Rolling statistics whose running sums lose precision are recomputed exactly (two-pass) from the ring: a nearly
constant series far from its first value makes the power sums cancel, and the recomputed cells must still match
the definition on every window at once."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from processors.features import rolling
from processors.features.pairs import PairSpec, RollingPairs
from processors.features.rolling import RollingMoments, SeriesRing

pytestmark = pytest.mark.unit

WINDOWS = (3, 5, 10, 20)
BARS = 60


def far_and_nearly_constant(rng: np.random.Generator, n: int) -> np.ndarray:
    """(bars, n, 2): two series per instrument at 0 for ten bars, then at 1e8 with noise of about 1e-3."""
    x = np.zeros((BARS, n, 2))
    x[10:] = 1e8 + rng.normal(0.0, 1e-3, size=(BARS - 10, n, 2))
    return x


def exact_moments(values: np.ndarray) -> tuple[float, float, float, float, float]:
    """Mean, sample std, z-score of the last value, skew and excess kurtosis, in exact rational arithmetic."""
    x = [Fraction(float(v)) for v in values]
    w = len(x)
    mean = sum(x, Fraction(0)) / w
    d = [v - mean for v in x]
    c2, c3, c4 = (sum((e ** k for e in d), Fraction(0)) / w for k in (2, 3, 4))
    std = math.sqrt(c2 * w / (w - 1))
    return (float(mean), std, float(d[-1]) / std, float(c3) / float(c2) ** 1.5, float(c4 / (c2 * c2)) - 3.0)


def exact_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation in exact rational arithmetic (but the final square root)."""
    fa, fb = [Fraction(float(v)) for v in a], [Fraction(float(v)) for v in b]
    ma, mb = sum(fa, Fraction(0)) / len(fa), sum(fb, Fraction(0)) / len(fb)
    cov = sum(((p - ma) * (q - mb) for p, q in zip(fa, fb, strict=True)), Fraction(0))
    va = sum(((p - ma) ** 2 for p in fa), Fraction(0))
    vb = sum(((q - mb) ** 2 for q in fb), Fraction(0))
    return float(cov) / math.sqrt(va * vb)


@pytest.fixture(params=["one-masked-run", "a-run-per-window"])
def recompute_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs both ways of recomputing: one masked run over the longest window, and a run per window."""
    if request.param == "a-run-per-window":
        monkeypatch.setattr(rolling, "ONE_RUN_MAX", 0)
    return str(request.param)


def record_exact_cells(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    """Counts of cells each call of ``module.name`` recomputed exactly (the call itself still runs)."""
    original = getattr(module, name)
    counts: list[int] = []

    def spy(*args: Any, **kwargs: Any) -> None:
        cells = args[3] if name == "_exact_central" else args[4]
        counts.append(int(np.count_nonzero(cells)))
        original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return counts


def test_moments_of_a_nearly_constant_window_far_from_the_shift_match_two_pass(
        monkeypatch: pytest.MonkeyPatch, recompute_path: str) -> None:
    # Arrange
    n = 3
    x = far_and_nearly_constant(np.random.default_rng(7), n)
    ring = SeriesRing(n, 2, 128)
    moments = RollingMoments(n, 2, WINDOWS, resync_every=10_000)  # no periodic re-centring: the sums drift
    exact = record_exact_cells(monkeypatch, rolling, "_exact_central")

    # Act
    for t in range(BARS):
        ring.push(t, x[t])
        moments.update(ring, n, t)
    stats = moments.stats(ring, n, BARS - 1)

    # Assert
    assert exact and exact[-1] > 0
    for i, w in enumerate(WINDOWS):
        for s in range(n):
            for k in range(2):
                mean, std, z, skew, kurt = exact_moments(x[BARS - w:, s, k])
                assert stats.mean[s, i, k] == pytest.approx(mean, rel=1e-15)
                assert stats.std[s, i, k] == pytest.approx(std, rel=1e-9)
                assert stats.z[s, i, k] == pytest.approx(z, rel=1e-9)
                assert stats.skew[s, i, k] == pytest.approx(skew, rel=1e-9, abs=1e-9)
                assert stats.kurt[s, i, k] == pytest.approx(kurt, rel=1e-9)


def test_correlations_of_nearly_constant_windows_far_from_zero_match_two_pass(
        monkeypatch: pytest.MonkeyPatch, recompute_path: str) -> None:
    # Arrange
    n = 3
    x = far_and_nearly_constant(np.random.default_rng(11), n)
    x[10:, :, 1] += 0.5 * (x[10:, :, 0] - 1e8)  # b follows a in part
    ring = SeriesRing(n, 2, 128)
    specs = [PairSpec(0, 0, 1, 0, False), PairSpec(0, 1, 1, 0, False)]  # a with b; a one bar back with b
    corr_pairs = RollingPairs(n, specs, WINDOWS, resync_every=10_000)
    peers = np.full(n, -1, dtype=np.int64)
    exact = record_exact_cells(monkeypatch, RollingPairs, "_exact")

    # Act
    for t in range(BARS):
        ring.push(t, x[t])
        corr_pairs.update(ring, n, t, peers)
    r = corr_pairs.corr(ring, n, BARS - 1, peers)

    # Assert
    assert exact and exact[-1] > 0
    for i, w in enumerate(WINDOWS):
        for s in range(n):
            a, b = x[BARS - w:, s, 0], x[BARS - w:, s, 1]
            a_lag = x[BARS - w - 1:BARS - 1, s, 0]
            assert r[s, i, 0] == pytest.approx(exact_corr(a, b), rel=1e-9)
            assert r[s, i, 1] == pytest.approx(exact_corr(a_lag, b), rel=1e-9)


def test_the_exact_recompute_leaves_cells_it_was_not_asked_for_alone(recompute_path: str) -> None:
    # Arrange
    n = 2
    x = far_and_nearly_constant(np.random.default_rng(3), n)
    ring = SeriesRing(n, 2, 128)
    for t in range(BARS):
        ring.push(t, x[t])
    cells = np.zeros((n, len(WINDOWS), 2), dtype=bool)
    cells[1, 2, 0] = True
    out = tuple(np.full((n, len(WINDOWS), 2), -7.0) for _ in range(5))

    # Act
    rolling._exact_central(ring, BARS - 1, np.asarray(WINDOWS), cells, np.zeros((n, 2)), out)  # type: ignore[arg-type]

    # Assert
    m1, c2 = out[0], out[1]
    win = x[BARS - WINDOWS[2]:, 1, 0]
    assert m1[1, 2, 0] == pytest.approx(win.mean(), rel=1e-15)
    assert c2[1, 2, 0] == pytest.approx(((win - win.mean()) ** 2).mean(), rel=1e-9)
    assert np.count_nonzero(m1 != -7.0) == 1 and np.count_nonzero(c2 != -7.0) == 1

