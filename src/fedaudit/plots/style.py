"""One figure style for every FedAudit plot, and the HU windows used to show CT.

Image montages (MR/CT slices) are plain matplotlib and call :func:`apply_style`; statistical
figures (heatmaps, curves, ROC) are drawn with seaborn under ``seaborn.set_theme(**STAT_THEME)``.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # rules run headless; never try to open a display

import matplotlib.pyplot as plt  # noqa: E402

# CT display windows (level, width) in HU; labelled on every figure that uses them.
HU_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "bone": (500.0, 2000.0),
    "wide": (0.0, 2000.0),
}

# Shared by both kinds of figure, so sizes and fonts match across the report.
RC: dict[str, Any] = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 9,
    "image.interpolation": "nearest",
    "image.origin": "lower",
}

# Keyword arguments of seaborn.set_theme. Plain data, not a function calling seaborn: the
# montages import this module in envs without seaborn (data, preprocess, attacks).
# "colorblind": the per-center colours must stay distinguishable for colour-blind readers.
STAT_THEME: dict[str, Any] = {
    "context": "paper",
    "style": "whitegrid",
    "palette": "colorblind",
    "rc": RC,
}


def hu_limits(window: str) -> tuple[float, float]:
    level, width = HU_WINDOWS[window]
    return level - width / 2.0, level + width / 2.0


def apply_style() -> None:
    plt.rcParams.update(RC)


def save(fig: plt.Figure, path: str) -> None:
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
