"""Data-poisoning impact as heatmaps: paper 000 Table 3 drawn as a picture.

Paper 000, Table 3: the MAE [HU] of every evaluated center (A-D and the external E) when one
training center at a time is poisoned with noise level gamma in {0.1, 0.5, 1.0}, under FedAvg
(top) and FedMedian (bottom), against the no-poisoning row of the same aggregation. Here each
(aggregation, gamma) is one panel, rows = poisoned center, columns = evaluated center, and each
cell is ΔMAE = MAE - MAE without poisoning (same aggregation, same evaluated center), in HU.
All panels share one colour scale centred at 0, so a colour means the same degradation
everywhere and FedAvg and FedMedian compare at a glance. The poisoned center evaluated on its
own test set, which Table 3 leaves out ("–"), is hatched grey with its value in parentheses: it
measures what the attacker did to itself, not to the federation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import Normalize

from fedaudit.plots.style import STAT_THEME, plt, save
from fedaudit.scenarios import aggregation_label

REQUIRED = ("aggregation", "gamma", "poisoned", "evaluated", "mae", "reference_mae")
# FedAvg first, then FedMedian (paper 000 Table 3), then any other rule by name.
PAPER_ORDER = ("fedavg", "fedmedian")
CMAP = "RdBu_r"  # red = worse than without poisoning, blue = better


def _signed_hu(v: float) -> str:
    """Integer HU with a sign; values that round to 0 print as "0", never "-0"."""
    n = int(round(v))
    return f"{n:+d}" if n else "0"


def _gamma_label(gamma: float) -> str:
    """γ with one decimal at least (1.0, 0.5), more only when needed, as scenario names do."""
    return f"{gamma:.1f}" if round(gamma, 1) == gamma else f"{gamma:g}"


def _aggregation_order(names: list[str]) -> list[str]:
    """FedAvg then FedMedian as in Table 3, any other rule after them alphabetically."""
    known = [a for a in PAPER_ORDER if a in names]
    return known + sorted(a for a in names if a not in PAPER_ORDER)


def poisoning_delta_table(grid: pd.DataFrame) -> pd.DataFrame:
    """ΔMAE per grid row: columns aggregation, gamma, poisoned, evaluated, delta_mae (HU) and
    self (the poisoned center evaluated on its own test set)."""
    if grid is None or len(grid) == 0:
        raise ValueError("poisoning grid is empty: no poisoning scenario results to plot "
                         "(run at least one poison-* scenario and its unpoisoned reference)")
    missing = [c for c in REQUIRED if c not in grid.columns]
    if missing:
        raise ValueError(f"poisoning grid lacks column(s) {missing}; it has "
                         f"{list(grid.columns)}")
    if "seed" in grid.columns:  # several training seeds: the study's (first), as the table's
        grid = grid[grid["seed"] == grid["seed"].iloc[0]]
    key = ["aggregation", "gamma", "poisoned", "evaluated"]
    dup = grid.duplicated(key, keep=False)
    if dup.any():
        raise ValueError("poisoning grid has more than one row for "
                         f"{grid.loc[dup, key].drop_duplicates().to_dict('records')}")
    out = grid[key].copy()
    # Center names as text: "A" and a numeric site id must sort and label the same way.
    for col in ("aggregation", "poisoned", "evaluated"):
        out[col] = out[col].astype(str)
    out["gamma"] = out["gamma"].astype(float)
    out["delta_mae"] = grid["mae"].astype(float) - grid["reference_mae"].astype(float)
    out["self"] = out["poisoned"] == out["evaluated"]
    return out.sort_values(key).reset_index(drop=True)


def _draw_panel(ax: plt.Axes, cells: pd.DataFrame, poisoned: list[str], evaluated: list[str],
                norm: Normalize, cmap: str) -> None:
    values = (cells.pivot(index="poisoned", columns="evaluated", values="delta_mae")
              .reindex(index=poisoned, columns=evaluated))
    is_self = (cells.pivot(index="poisoned", columns="evaluated", values="self")
               .reindex(index=poisoned, columns=evaluated).fillna(False).astype(bool))
    labels = values.map(lambda v: _signed_hu(v) if np.isfinite(v) else "")
    # Self cells carry no colour: their value is not on the federation-impact scale. seaborn
    # leaves masked cells (and their annotations) undrawn; they are filled in below.
    # Annotation colour follows the cell's luminance (white on the saturated ends of the map).
    sns.heatmap(values.astype(float), ax=ax, mask=is_self | values.isna(), cmap=cmap, norm=norm,
                cbar=False, annot=labels.to_numpy(), fmt="", annot_kws={"fontsize": 8},
                linewidths=1.0, linecolor="white", xticklabels=evaluated,
                yticklabels=poisoned)
    for i, p in enumerate(poisoned):
        row = values.loc[p]
        if row.isna().all() and not is_self.loc[p].any():
            ax.text(len(evaluated) / 2, i + 0.5, "not run", ha="center", va="center",
                    fontsize=8, color="0.45", style="italic")
            continue
        for j, e in enumerate(evaluated):
            if not is_self.loc[p, e]:
                continue
            ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor="0.88", edgecolor="0.6",
                                       hatch="///", lw=0))
            v = row[e]
            if np.isfinite(v):
                ax.text(j + 0.5, i + 0.5, f"({_signed_hu(v)})", ha="center", va="center",
                        fontsize=8, color="0.25",
                        bbox={"facecolor": "0.88", "edgecolor": "none", "pad": 0.5})
    ax.tick_params(axis="y", labelrotation=0)
    ax.grid(False)


def poisoning_heatmap_figure(grid: pd.DataFrame, out_png: str | Path) -> pd.DataFrame:
    """Write the ΔMAE heatmaps of a poisoning grid and return the values drawn.

    ``grid``: one row per (aggregation, gamma, poisoned, evaluated) with ``mae`` (HU, the
    evaluated center's mean test MAE in that scenario) and ``reference_mae`` (HU, the same center
    without poisoning, same aggregation). Panels: one row per aggregation, one column per gamma
    (ascending); inside, rows = poisoned centers, columns = evaluated centers, both sorted.
    (aggregation, gamma, poisoned) combinations absent from ``grid`` are left blank ("not run").

    Returns a DataFrame with columns aggregation, gamma, poisoned, evaluated, delta_mae (HU,
    mae - reference_mae) and self (bool, poisoned == evaluated). Raises ValueError on an empty
    grid, missing columns or duplicated cells.
    """
    delta = poisoning_delta_table(grid)
    aggs = _aggregation_order(list(delta["aggregation"].unique()))
    gammas = sorted(delta["gamma"].unique())
    poisoned = sorted(delta["poisoned"].unique())
    evaluated = sorted(delta["evaluated"].unique())

    # One symmetric scale for all panels, set by the cells that carry colour (not self cells).
    coloured = delta.loc[~delta["self"], "delta_mae"].abs()
    coloured = coloured[np.isfinite(coloured)]
    vmax = float(coloured.max()) if len(coloured) else 0.0
    vmax = vmax if vmax > 0 else 1.0
    norm = Normalize(-vmax, vmax)

    nrow, ncol = len(aggs), len(gammas)
    panel_w = 0.6 * len(evaluated) + 0.9
    panel_h = 0.42 * len(poisoned) + 0.9
    # rc_context: the theme must not leak into image montages drawn later in the same process.
    with plt.rc_context():
        sns.set_theme(**STAT_THEME)
        # at least as wide as the two-line title (one panel of a small grid is narrower)
        fig, axes = plt.subplots(nrow, ncol, squeeze=False, layout="constrained",
                                 figsize=(max(panel_w * ncol + 1.4, 6.5), panel_h * nrow + 0.9))
        for r, agg in enumerate(aggs):
            for c, gamma in enumerate(gammas):
                ax = axes[r][c]
                cells = delta[(delta["aggregation"] == agg) & (delta["gamma"] == gamma)]
                _draw_panel(ax, cells, poisoned, evaluated, norm, CMAP)
                ax.set_title(f"{aggregation_label(agg)}, γ = {_gamma_label(gamma)}",
                             fontsize=10)
                ax.set_xlabel("evaluated center" if r == nrow - 1 else "")
                ax.set_ylabel("poisoned center" if c == 0 else "")
        sm = plt.cm.ScalarMappable(norm=norm, cmap=CMAP)
        fig.colorbar(sm, ax=axes.ravel().tolist(), shrink=0.85, aspect=25,
                     label="ΔMAE vs no poisoning (HU)")
        fig.suptitle("Data poisoning: test MAE change per evaluated center (paper 000 Table 3)\n"
                     "hatched (value): the poisoned center on its own test set", fontsize=10)
        save(fig, str(out_png))
    return delta
