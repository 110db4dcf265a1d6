"""The privacy-utility figure of the update-noise defenses: utility on the x axis, attack
success on the y axis, one point per noise level (baseline included), ε as labels (the
accountant's, and the one-run audit's lower bound for one round); one panel
for the sCT federation (MAE against FedMIA's AUC, or the best UNet inversion SSIM without
FedMIA) and one for paper 003's slice classifier (accuracy against the best inversion ASR)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedaudit.catalog import loaded_noise_families
from fedaudit.comparisons.privacy_utility.report import noise_reference
from fedaudit.defenses.budgets import NO_NOISE, level_symbol
from fedaudit.plots.style import STAT_THEME, apply_style, save


def legend_labels() -> dict[str, str]:
    """The figure's legend per family, no noise first (``NoiseFamily.figure_label``, else its
    label), in ``rank`` order."""
    return {NO_NOISE: "no noise", **{name: f.figure_label or f.label
                                     for name, f in loaded_noise_families().items()}}


def _best(frame: pd.DataFrame, prefix: str, suffix: str) -> np.ndarray:
    cols = [c for c in frame.columns if c.startswith(prefix) and c.endswith(suffix)]
    return frame[cols].max(axis=1).to_numpy(float) if cols else np.full(len(frame), np.nan)


def _label(row: pd.Series) -> str:
    """A point's label: the level and its accountant's ε, and the ε the privacy audit measured
    for one round (a lower bound) where it ran."""
    measured = row.get("epsilon_measured", np.nan)
    audit = f" (≥{measured:.2f}/round measured)" if np.isfinite(measured) else ""
    if row["defense"] == "none":  # the baseline, or DP-SGD's GroupNorm reference
        return str(row.get("scenario", "baseline")) + audit
    eps = row.get("epsilon", np.nan)
    lvl = f"{level_symbol(row['defense'])}={row['level']:g}"
    return lvl + (f", ε={eps:.3g}" if np.isfinite(eps) else ", no ε") + audit


def _right_part(x: float, xs: pd.Series) -> bool:
    """Whether ``x`` lies in the right 40 % of the finite values of ``xs``."""
    finite = xs[np.isfinite(xs)]
    lo, hi = float(finite.min()), float(finite.max())
    return hi > lo and (x - lo) / (hi - lo) > 0.6


def privacy_utility_figure(table: pd.DataFrame, path: str) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(**STAT_THEME)
    apply_style()
    # the sCT federation's privacy axis: FedMIA's AUC (the attack paper 000 evaluates DP
    # against), else the best inversion SSIM on the UNet
    fedmia = "fedmia_auc" in table and np.isfinite(table["fedmia_auc"].astype(float)).any()
    panels = [("mae", "sCT MAE in the head (HU, lower is better)",
               *(("fedmia_auc", "", "FedMIA AUC (patients, same-center non-members)")
                 if fedmia else ("unet_", "_ssim", "best UNet mean SSIM of the attacks"))),
              ("accuracy", "classifier test accuracy", "classifier_", "_asr",
               "best classifier ASR (SSIM ≥ 0.9)")]
    # constrained layout and one legend under both panels: the labels beside the points never
    # run under a legend or into the other panel
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.8), layout="constrained")
    labels = legend_labels()
    palette = dict(zip(labels, sns.color_palette("colorblind", len(labels)), strict=True))
    # labels of different defenses go to different sides so coinciding points stay legible:
    # no noise above, then the families in rank order alternately below and above, further
    # out each time
    offsets = {name: (6, 8 if i == 0 else (-12 if i % 2 else 20) * (1 + (i - 1) // 2))
               for i, name in enumerate(labels)}
    for ax, (xcol, xlabel, prefix, suffix, ylabel) in zip(axes, panels, strict=True):
        y = _best(table, prefix, suffix)
        x = table[xcol].to_numpy(float) if xcol in table else np.full(len(table), np.nan)
        frame = table.assign(_x=x, _y=y)
        for defense, sub in frame.groupby("defense", sort=False):
            # each level's line starts at the federation without noise that trains its UNet
            line = sub if defense == "none" else pd.concat([noise_reference(frame, sub),
                                                            sub.sort_values("level")])
            line = line[np.isfinite(line["_x"]) & np.isfinite(line["_y"])]
            # the federations without noise on top: every line starts on one of them
            ax.plot(line["_x"], line["_y"], "o" if defense == "none" else "o-",
                    color=palette.get(defense), label=labels.get(defense, defense),
                    zorder=3 if defense == "none" else 2)
            for _, r in sub.iterrows():
                if np.isfinite(r["_x"]) and np.isfinite(r["_y"]):
                    dx, dy = offsets.get(defense, (6, 6))
                    # a point in the right part of the panel is labelled on its left, so the
                    # label stays inside the panel
                    if _right_part(r["_x"], frame["_x"]):
                        dx = -dx
                    ax.annotate(_label(r), (r["_x"], r["_y"]), textcoords="offset points",
                                xytext=(dx, dy), ha="left" if dx >= 0 else "right",
                                fontsize=7, color=palette.get(defense))
        missing = [_label(r) for _, r in frame.iterrows()
                   if not (np.isfinite(r["_x"]) and np.isfinite(r["_y"]))]
        if missing:
            ax.text(0.02, 0.97, "not plotted (no usable model):\n" + "\n".join(missing),
                    transform=ax.transAxes, va="top", fontsize=7)
        # the null lines are named in the legend, not beside the line, where a point's label
        # could fall on them
        if prefix == "fedmia_auc":
            ax.axhline(0.5, ls="--", color="grey", lw=1, label="chance (AUC 0.5)")
        if prefix == "unet_" and "null_unet_ssim" in table:
            null = float(table["null_unet_ssim"].max())
            ax.axhline(null, ls="--", color="grey", lw=1,
                       label="null: a different slice of the center")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(-0.05, 1.05)
        ax.margins(x=0.12)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=max(len(names), 1), fontsize=8,
               frameon=False)
    axes[0].set_title("sCT federation (UNet)")
    axes[1].set_title("paper 003's slice classifier (CNN)")
    fig.suptitle("Noise defenses: utility against attack success (one point per noise level)")
    save(fig, path)
