"""Every feature against a slow direct computation from its definition, on real data: the ESH4 session through
the book engine, and BTCUSDT on Binance spot and USD-M futures (cross-venue basis and lead-lag)."""

from __future__ import annotations

import numpy as np
import pytest

from processors.features import FeatureConfig, FeatureEngine
from tests.processors.features.realdata import binance_btc_events, coinbase_events, esh4_events
from tests.processors.features.reference_bars import bar_series
from tests.processors.features.reference_rolling import reference_features
from tests.processors.features.support import SECOND, aligned_series, matrix, mismatches, run

pytestmark = [pytest.mark.unit, pytest.mark.slow]

CFG = FeatureConfig(intervals_ns=(SECOND,))
SPOT, PERP = "binance:BTCUSDT", "binance_futures:BTCUSDT"


def test_catalog_has_at_least_1400_named_features() -> None:
    names = FeatureEngine().names()
    assert len(names) >= 1400
    assert len(set(names)) == len(names)


def test_esh4_every_feature_matches_its_definition() -> None:
    events = esh4_events()
    engine, frames = run(events, CFG)
    inst = engine.instruments[0]
    first = frames[0].ts_event // SECOND - 1
    ref = reference_features(bar_series(events, inst, SECOND, first, len(frames)), None, CFG)
    bad = mismatches(matrix(frames, inst), engine.names(), ref)
    assert not bad, f"{len(bad)} features differ:\n" + "\n".join(bad[:30])


def test_binance_spot_and_futures_every_feature_matches_its_definition() -> None:
    events = binance_btc_events()
    cfg = FeatureConfig(intervals_ns=(SECOND,), assets={SPOT: "BTC", PERP: "BTC"})
    engine, frames = run(events, cfg)
    first = frames[0].ts_event // SECOND - 1
    series = {i: aligned_series(events, frames, i, first) for i in (SPOT, PERP)}
    for inst, peer in ((SPOT, PERP), (PERP, SPOT)):
        ref = reference_features(series[inst], series[peer], cfg)
        late = [f for f in frames if inst in f.instruments]
        offset = len(frames) - len(late)
        bad = mismatches(matrix(late, inst), engine.names(), {k: v[offset:] for k, v in ref.items()})
        assert not bad, f"{inst}: {len(bad)} features differ:\n" + "\n".join(bad[:30])
    basis = matrix(frames[5:], PERP)[:, engine.names().index("basis_bps")]
    assert np.nanmax(np.abs(basis)) < 50.0  # the same asset: the basis is a few bps


def test_coinbase_ten_products_every_feature_matches_its_definition() -> None:
    """Ten products of one capture in one engine (late and quiet instruments), short windows (30 s of data)."""
    events = coinbase_events()
    cfg = FeatureConfig(intervals_ns=(SECOND,), windows=(3, 5, 10), ema_spans=(3, 5, 10), acf_lags=(1, 2),
                        leadlag_lags=(-1, 0, 1))
    engine, frames = run(events, cfg)
    first = frames[0].ts_event // SECOND - 1
    assert len(engine.instruments) == 10
    for inst in engine.instruments:
        ref = reference_features(aligned_series(events, frames, inst, first), None, cfg)
        late = [f for f in frames if inst in f.instruments]
        offset = len(frames) - len(late)
        bad = mismatches(matrix(late, inst), engine.names(), {k: v[offset:] for k, v in ref.items()})
        assert not bad, f"{inst}: {len(bad)} features differ:\n" + "\n".join(bad[:30])
