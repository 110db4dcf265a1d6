"""FedMIA ROC curves, pooled over target centers, one line per attacked scenario and server view
(paper 000 Fig. 3, measured as membership and as center inference side by side)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from fedaudit.archives import load_npz
from fedaudit.attacks.fedmia.report import PRIMARY_SCORE, VIEW_LABELS
from fedaudit.plots.style import STAT_THEME, plt, save

TEST_TITLES = {"membership": "membership: members vs same-center held-out",
               "center": "center inference: members vs external center"}


def fedmia_roc_figure(roc_files: dict[str, str | Path], table: pd.DataFrame, out_png: str,
                      unit: str | None = None) -> None:
    """One panel per test; the pooled unit-level ROC of every scenario and view in ``roc_files``
    (scenario -> ``roc.npz``) read by its primary score, over the chance line. Each legend
    entry gives the area under the curve drawn (units: slices or batches) and, named as such,
    the pooled patient-level AUC with its 95 % CI that the verdict reads: a curve is never
    labelled with another level's number."""
    unit = unit or str(table["unit"].iloc[0])
    pooled = table[(table["target"] == "all") & (table["level"] == "patient")
                   & (table["unit"] == unit)].set_index(["scenario", "view", "score", "test"])
    units = "batch" if unit == "batch" else "slice"
    curves = {}
    for scenario, path in roc_files.items():
        curves[scenario] = load_npz(path)
    # rc_context: the theme must not leak into image montages drawn later in the same process.
    with plt.rc_context():
        sns.set_theme(**STAT_THEME)
        # constrained layout: the legends under the panels get the room their entries need
        fig, axes = plt.subplots(1, len(TEST_TITLES), figsize=(5.0 * len(TEST_TITLES), 5.4),
                                 squeeze=False, layout="constrained")
        for ax, (test, title) in zip(axes[0], TEST_TITLES.items(), strict=True):
            ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--", label="chance (AUC 0.5)")
            for scenario in roc_files:
                for view in VIEW_LABELS:
                    score = PRIMARY_SCORE[view]
                    key = f"{view}/{score}/{unit}/{test}"
                    fpr = curves[scenario].get(f"{key}/fpr")
                    tpr = curves[scenario].get(f"{key}/tpr")
                    if fpr is None or fpr.size == 0:
                        continue
                    r = pooled.loc[(scenario, view, score, test)] \
                        if (scenario, view, score, test) in pooled.index else None
                    # the area under this very curve (trapezoids over the ROC's points: the
                    # ROC-AUC of the pooled ranks it was computed from)
                    area = float(np.trapezoid(tpr, fpr))
                    auc = f": {units} AUC {area:.2f}"
                    if r is not None:
                        auc += (f"; patients {r['auc']:.2f} [{r['ci_low']:.2f}, "
                                f"{r['ci_high']:.2f}]" if np.isfinite(r["ci_low"])
                                else f"; patients {r['auc']:.2f}")
                    # sort=False, estimator=None: the ROC's own point order, ties in fpr
                    # (vertical steps) included, with nothing averaged.
                    sns.lineplot(x=fpr, y=tpr, ax=ax, sort=False, estimator=None, lw=1.4,
                                 label=f"{scenario}, {view}{auc}")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("false positive rate (batches)" if unit == "batch"
                          else "false positive rate (slices)")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.01)
            ax.set_aspect("equal")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=7,
                      frameon=False)
        axes[0][0].set_ylabel("true positive rate")
        fig.suptitle("FedMIA, pooled over target centers")
        save(fig, out_png)
