"""The regime detector recovers the known states of generated two-regime series; HMM fitting; checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from processors.regime import (
    ConfigError,
    HmmParams,
    RegimeConfig,
    RegimeDetector,
    StateError,
    fit_hmm,
    variance_ratio,
)
from tests.processors.regime.generated import two_trend_regimes, two_vol_regimes

pytestmark = pytest.mark.unit

INSTRUMENTS = [f"i{k}" for k in range(8)]
VOL_ACCURACY = 0.88  # measured 0.920 (seed 1, 5,000 bars × 8 instruments, volatility ×3 in the turbulent state)
TREND_ACCURACY = 0.85  # measured 0.905 (seed 2, 6,000 bars × 8, AR(1) ±0.4)


def replay(det: RegimeDetector, returns: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
    vol, trend, changes = [], [], []
    for t in range(start, len(returns)):
        u = det.update(INSTRUMENTS, t, 1, returns[t])
        vol.append(u.vol_state.copy())
        trend.append(u.trend_state.copy())
        changes += u.changes()
    return np.array(vol), np.array(trend), changes


@pytest.mark.slow
def test_volatility_regimes_of_a_generated_series_are_recovered() -> None:
    r, truth = two_vol_regimes(seed=1, bars=5000, instruments=8)
    vol, _trend, changes = replay(RegimeDetector(), r)
    warm = vol >= 0
    assert warm[:599].sum() == 0 and warm[620:].all()  # fitted once 600 observations are in
    assert (vol[warm] == truth[warm]).mean() >= VOL_ACCURACY
    switches = int((np.diff(truth[620:], axis=0) != 0).sum())
    vol_changes = sum(1 for c in changes if c.kind == "volatility")
    assert 0.8 * switches <= vol_changes <= 1.2 * switches  # one event per real switch, no flapping


@pytest.mark.slow
def test_trend_regimes_of_a_generated_series_are_recovered() -> None:
    r, truth = two_trend_regimes(seed=2, bars=6000, instruments=8)
    _vol, trend, changes = replay(RegimeDetector(), r)
    warm = trend >= 0
    assert warm[:99].sum() == 0 and warm[99:].all()
    assert (trend[warm] == truth[warm]).mean() >= TREND_ACCURACY
    switches = int((np.diff(truth, axis=0) != 0).sum())
    assert 0.8 * switches <= sum(1 for c in changes if c.kind == "trend") <= 1.2 * switches


def test_fit_hmm_recovers_generated_parameters() -> None:
    rng = np.random.default_rng(4)
    states = np.zeros((4000, 3), dtype=np.int64)
    for t in range(1, 4000):
        flip = rng.random(3) < 0.01
        states[t] = np.where(flip, 1 - states[t - 1], states[t - 1])
    obs = np.where(states == 1, 2.0, -1.0) + rng.standard_normal(states.shape) * np.where(states == 1, 0.7, 0.5)
    hmm = fit_hmm(obs, min_variance=1e-3)
    assert np.allclose(hmm.means, [[-1.0, 2.0]] * 3, atol=0.1)
    assert np.allclose(hmm.variances, [[0.25, 0.49]] * 3, atol=0.08)
    assert np.allclose(hmm.transition[:, 0, 1], 0.01, atol=0.01)


def test_variance_ratio_of_a_random_walk_is_one() -> None:
    vr, z = variance_ratio(np.random.default_rng(0).standard_normal((4000, 100)), 4)
    assert abs(vr.mean() - 1.0) < 0.02 and abs(z.std() - 1.0) < 0.05


def test_offline_parameters_need_no_warmup_fit() -> None:
    params = HmmParams(means=(-9.5, -8.3), variances=(0.1, 0.1), transition=((0.99, 0.01), (0.01, 0.99)))
    r, _truth = two_vol_regimes(seed=1, bars=200, instruments=8)
    vol, _trend, _ = replay(RegimeDetector(RegimeConfig(vol_params=params)), r)
    assert (vol[9:] >= 0).all() and (vol[:9] < 0).all()


def test_signals_carry_state_probability_and_changes() -> None:
    r, _truth = two_vol_regimes(seed=1, bars=800, instruments=8)
    det = RegimeDetector()
    for t in range(len(r)):
        u = det.update(INSTRUMENTS, t * 10**9, 10**9, r[t])
    sigs = u.signals()
    assert {(s.instrument, s.kind) for s in sigs} == {(i, k) for i in INSTRUMENTS for k in ("volatility", "trend")}
    assert all(0.0 <= s.probability <= 1.0 and s.ts_event == 799 * 10**9 for s in sigs)
    assert {s.state for s in sigs} <= {"calm", "turbulent", "trending", "mean-reverting"}


def test_checkpoint_mid_series_gives_identical_later_states() -> None:
    r, _truth = two_vol_regimes(seed=3, bars=1200, instruments=8)
    whole = replay(RegimeDetector(), r)
    first = RegimeDetector()
    replay(first, r[:700])
    again = RegimeDetector.restore(first.checkpoint())
    later = replay(again, r, start=700)
    assert np.array_equal(whole[0][700:], later[0]) and np.array_equal(whole[1][700:], later[1])
    assert [c.ts_event for c in whole[2] if c.ts_event >= 700] == [c.ts_event for c in later[2]]


def test_errors() -> None:
    with pytest.raises(ConfigError):
        RegimeConfig(confirm=0.3)
    with pytest.raises(StateError):
        RegimeDetector.restore(b"\x00")
