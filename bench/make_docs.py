"""Make the generated docs of features and regimes.

    .venv/bin/python bench/make_docs.py            # docs/features.md and docs/regime_esh4.png
    .venv/bin/python bench/make_docs.py --no-plot  # docs/features.md only

The plot replays the ESH4 session (shared/data/databento/nautilus/esh4-glbx-mdp3-20231225.mbo.dbn.zst) through the
book engine into the feature engine (1 s bars from 22:30 UTC) and the regime detector, and draws the mid price with
the volatility regime's probability and the trend state (needs matplotlib, a dev dependency).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from processors.features import FeatureConfig, FeatureEngine  # noqa: E402
from processors.features.docs import catalog_markdown  # noqa: E402
from processors.regime import RegimeConfig, RegimeDetector  # noqa: E402

SECOND = 1_000_000_000


def esh4_regimes() -> dict[str, np.ndarray]:
    """Per 1 s bar of ESH4: bar end (s), mid, P(turbulent), volatility and trend states."""
    from tests.processors.features.realdata import esh4_events  # the same replay as the feature tests

    engine = FeatureEngine(FeatureConfig(intervals_ns=(SECOND,)))
    det = RegimeDetector(RegimeConfig())
    rows: list[tuple[float, float, float, int, int]] = []
    events = esh4_events()
    engine.advance_to(events[0][0])
    for ts, rec in events:
        for frame in engine.advance_to(ts):
            u = det.update(frame.instruments, frame.ts_event, frame.interval_ns, frame.column("ret"))
            p_turb = det.prob[0, 1] if u.vol_state[0] >= 0 else np.nan
            rows.append((frame.ts_event / 1e9, frame.column("mid")[0], p_turb, u.vol_state[0], u.trend_state[0]))
        engine.feed(rec)
    a = np.array(rows, dtype=np.float64)
    return {"t": a[:, 0], "mid": a[:, 1], "p_turbulent": a[:, 2], "vol": a[:, 3], "trend": a[:, 4]}


def plot(data: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    t = data["t"].astype("datetime64[s]")
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(12, 8), sharex=True, height_ratios=[3, 1.2, 1])
    ax1.plot(t, data["mid"], lw=0.8, color="black")
    turbulent = data["vol"] == 1
    ax1.fill_between(t, np.nanmin(data["mid"]), np.nanmax(data["mid"]), where=turbulent, color="tab:red",
                     alpha=0.15, step="post", label="volatility regime: turbulent")
    ax1.set_ylabel("ESH4 mid")
    ax1.legend(loc="upper left")
    ax1.set_title("ESH4 2023-12-25, 1 s bars: volatility regime (HMM on log realized vol) and trend state (VR)")
    ax2.plot(t, data["p_turbulent"], lw=0.8, color="tab:red")
    ax2.set_ylabel("P(turbulent)")
    ax2.set_ylim(-0.05, 1.05)
    ax3.step(t, np.where(data["trend"] >= 0, data["trend"], np.nan), where="post", lw=0.8, color="tab:blue")
    ax3.set_yticks([0, 1], ["mean-rev.", "trending"])
    ax3.set_ylim(-0.3, 1.3)
    ax3.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    ax3.set_xlabel("UTC")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args()
    (ROOT / "docs" / "features.md").write_text(catalog_markdown(), encoding="utf-8")
    print("wrote docs/features.md")
    if not args.no_plot:
        data = esh4_regimes()
        plot(data, ROOT / "docs" / "regime_esh4.png")
        warm = data["vol"] >= 0
        print(f"wrote docs/regime_esh4.png: {len(data['t'])} bars, "
              f"turbulent share {np.mean(data['vol'][warm] == 1):.2f}, "
              f"volatility changes {int(np.sum(np.diff(data['vol'][warm]) != 0))}, "
              f"trend changes {int(np.sum(np.diff(data['trend'][data['trend'] >= 0]) != 0))}")


if __name__ == "__main__":
    main()
