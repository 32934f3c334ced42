"""Driving the engine over an event stream, and comparing its columns with reference values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from processors.features import FeatureConfig, FeatureEngine, FeatureFrame, Record
from tests.processors.features.reference_bars import bar_series

SECOND = 1_000_000_000
RTOL = 1e-9


def run(events: Sequence[tuple[int, Record]], cfg: FeatureConfig, engine: FeatureEngine | None = None,
        start: int | None = None, stop: int | None = None) -> tuple[FeatureEngine, list[FeatureFrame]]:
    """Feed ``events[start:stop]`` advancing the bar clock to each event's time; closes the last open bar."""
    interval = cfg.intervals_ns[0]
    engine = engine or FeatureEngine(cfg)
    part = events[start:stop]
    frames: list[FeatureFrame] = []
    if start is None:
        engine.advance_to(part[0][0])
    for ts, rec in part:
        frames += engine.advance_to(ts)
        engine.feed(rec)
    if stop is None:
        frames += engine.advance_to((part[-1][0] // interval + 1) * interval)
    return engine, frames


def matrix(frames: Sequence[FeatureFrame], instrument: str) -> np.ndarray:
    """(bars, features) of one instrument."""
    return np.stack([f.values[f.instruments.index(instrument)] for f in frames])


def mismatches(got: np.ndarray, names: Sequence[str], ref: dict[str, np.ndarray], rtol: float = RTOL
               ) -> list[str]:
    """Features whose NaN pattern differs or whose values differ by more than rtol × max(|ref|, the feature's
    scale = max |ref| over the run)."""
    bad = []
    for j, name in enumerate(names):
        r = ref[name]
        g = got[:, j]
        if not np.array_equal(np.isnan(g), np.isnan(r)):
            t = int(np.nonzero(np.isnan(g) != np.isnan(r))[0][0])
            bad.append(f"{name}: NaN pattern differs first at bar {t} (engine {g[t]}, reference {r[t]})")
            continue
        ok = ~np.isnan(r)
        if not ok.any():
            continue
        scale = np.max(np.abs(r[ok]))
        err = np.abs(g[ok] - r[ok])
        tol = rtol * np.maximum(np.abs(r[ok]), scale)
        if np.any(err > tol):
            i = int(np.argmax(err / np.maximum(tol, 1e-300)))
            bad.append(f"{name}: |Δ| {err[i]:.3g} at value {r[ok][i]:.6g} (scale {scale:.3g})")
    return bad


def aligned_series(events: Sequence[tuple[int, Record]], frames: Sequence[FeatureFrame], inst: str, first: int
                   ) -> dict[str, np.ndarray]:
    """Reference bar series of ``inst`` from its first bar, NaN before it (the engine has no row for it yet)."""
    offset = next(i for i, f in enumerate(frames) if inst in f.instruments)
    own = bar_series(events, inst, SECOND, first + offset, len(frames) - offset)
    return {k: np.concatenate([np.full(offset, np.nan), v]) for k, v in own.items()}
