"""FedMIA ROC curves per target center, one line per attacked scenario (paper 000 Fig. 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fedaudit.plots.style import apply_style, plt, save


def fedmia_roc_figure(roc_files: dict[str, str | Path], table: pd.DataFrame, out_png: str,
                      score: str = "fedmia", level: str = "slice") -> None:
    """One panel per target center; the slice-level FedMIA ROC of every scenario in
    ``roc_files`` (scenario -> ``roc.npz``), with its AUC in the legend, over the chance line."""
    apply_style()
    curves = {}
    for scenario, path in roc_files.items():
        with np.load(path) as z:
            curves[scenario] = {k: z[k] for k in z.files}
    targets = sorted(table["target"].unique())
    auc = (table[(table.metric == "auc") & (table.score == score) & (table.level == level)]
           .set_index(["scenario", "target"])["value"])
    secagg = table.groupby("scenario")["secagg"].first()
    fig, axes = plt.subplots(1, len(targets), figsize=(2.8 * len(targets), 3.0), squeeze=False)
    for ax, target in zip(axes[0], targets, strict=True):
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--", label="chance (AUC 0.5)")
        for scenario, z in curves.items():
            key = f"{target}/{score}/{level}"
            fpr, tpr = z.get(f"{key}/fpr"), z.get(f"{key}/tpr")
            if fpr is None or fpr.size == 0:
                continue
            label = f"{scenario}{' (SecAgg+)' if secagg.get(scenario) else ''}: " \
                    f"AUC {auc.get((scenario, target), float('nan')):.2f}"
            ax.plot(fpr, tpr, lw=1.4, label=label)
        ax.set_title(f"target center {target}")
        ax.set_xlabel("false positive rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=7, frameon=False)
    axes[0][0].set_ylabel("true positive rate")
    fig.suptitle(f"FedMIA membership inference ({level} level): members = the target's "
                 "training patients, non-members = its test and the external patients")
    save(fig, out_png)
    plt.close(fig)
