"""The feature engine's configuration: bar intervals, rolling windows, EMA spans, lags, cross-venue assets."""

from __future__ import annotations

import msgspec

from processors.features.errors import ConfigError

SECOND_NS = 1_000_000_000


class FeatureConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What to compute. Windows, spans and lags are counted in bars of each interval."""

    intervals_ns: tuple[int, ...] = (SECOND_NS, 60 * SECOND_NS)  # bar lengths; bars are aligned on multiples
    windows: tuple[int, ...] = (3, 5, 10, 20, 50, 100)  # rolling windows, bars (>= 2)
    ema_spans: tuple[int, ...] = (3, 5, 10, 20, 50, 100)  # EMA spans, bars: alpha = 2 / (span + 1)
    acf_lags: tuple[int, ...] = (1, 2, 3, 4, 5)  # autocorrelation lags of returns, bars
    leadlag_lags: tuple[int, ...] = (-3, -2, -1, 0, 1, 2, 3)  # cross-venue lags; > 0: the peer leads
    assets: dict[str, str] = {}  # instrument -> asset name, for basis and lead-lag across venues
    max_gap_bars: int = 3_600  # more empty bars than this in one advance: skip them and restart the warm-up
    resync_every: int = 32  # rolling sums of each instrument are recomputed exactly once every this many bars

    def __post_init__(self) -> None:
        _check_positive_sorted("intervals_ns", self.intervals_ns, 1)
        _check_positive_sorted("windows", self.windows, 2)
        _check_positive_sorted("ema_spans", self.ema_spans, 1)
        _check_positive_sorted("acf_lags", self.acf_lags, 1)
        if len(set(self.leadlag_lags)) != len(self.leadlag_lags):
            raise ConfigError(f"leadlag_lags {self.leadlag_lags} repeat a lag")
        if self.max_gap_bars < 1 or self.resync_every < 1:
            raise ConfigError("max_gap_bars and resync_every must be >= 1")

    @property
    def max_lag(self) -> int:
        return max([*self.acf_lags, *(abs(k) for k in self.leadlag_lags)])

    @property
    def history(self) -> int:
        """Bars of history every rolling statistic needs: the longest window, its longest lag and one more."""
        return max(self.windows) + self.max_lag + 2


def _check_positive_sorted(name: str, values: tuple[int, ...], least: int) -> None:
    if not values:
        raise ConfigError(f"{name} is empty")
    if any(v < least for v in values):
        raise ConfigError(f"{name} {values}: every value must be >= {least}")
    if list(values) != sorted(set(values)):
        raise ConfigError(f"{name} {values} must be increasing without repeats")
