"""Training curves of one federated scenario: local loss and validation MAE per round.

Source: paper 000, "Federated Learning Framework": every round each training center runs local
epochs of Random Multi-2D training from the global model and the server aggregates the updates
(FedAvg + FedProx in the baseline, FedMedian as the poisoning defence); the model is selected on
the validation MAE. The figure shows, per round and per center, (left) the mean local training
loss reported by the client, and (right) the validation MAE in HU of the aggregated model on that
center's validation patients, with the federation-wide value pooled over voxels (a center with
more validation voxels weighs more, so the pooled line is the MAE over all validation voxels).
In a poisoning scenario the attacker's lines are dashed: its loss is measured on its own noisy
data, so it is not comparable with the honest centers' losses. When the history holds
``val_mae_constant`` (the constant predictor's validation MAE per center,
:mod:`fedaudit.evaluation.reference`), each center's value is a dotted horizontal line in its
colour: a federation that learned ends well below its lines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from fedaudit.plots.style import STAT_THEME, plt, save

REQUIRED = ("round", "center", "train_loss")
# A federation without validation patients logs no validation columns at all.
VALIDATION = ("val_mae", "val_voxels")

# What ``train_loss`` is (fedaudit.federation.local.train_local): the data term of the local
# objective, without FedProx's proximal term, on the CT mapped by fedaudit.intensity.hu_to_unit.
LOSS_LABELS = {
    "l1": "L1 loss\n(CT in HU clipped to [−1024, 3000], scaled to [0, 1])",
    "mse": "MSE loss\n(CT in HU clipped to [−1024, 3000], scaled to [0, 1])",
}


def pooled_validation_mae(history: pd.DataFrame) -> pd.DataFrame:
    """Per round, Σ val_mae·val_voxels / Σ val_voxels over centers with a finite val_mae and
    val_voxels > 0; NaN for a round where no center validated. Columns round, val_mae_pooled."""
    h = history[["round", "val_mae", "val_voxels"]].astype(float)
    ok = np.isfinite(h["val_mae"]) & np.isfinite(h["val_voxels"]) & (h["val_voxels"] > 0)
    num = (h["val_mae"] * h["val_voxels"]).where(ok, 0.0).groupby(history["round"]).sum()
    den = h["val_voxels"].where(ok, 0.0).groupby(history["round"]).sum()
    pooled = (num / den.where(den > 0)).rename("val_mae_pooled")
    return pooled.rename_axis("round").reset_index()


def constant_lines(history: pd.DataFrame) -> dict[str, float]:
    """Per center, the constant predictor's validation MAE (HU) the figure draws as its dotted
    line: ``val_mae_constant`` of the center's rows (one value per center; {} when absent)."""
    if "val_mae_constant" not in history.columns:
        return {}
    out = {}
    for center, values in history.groupby(history["center"].astype(str))["val_mae_constant"]:
        finite = values.astype(float)[np.isfinite(values.astype(float))]
        if len(finite):
            if finite.nunique() != 1:
                raise ValueError(f"center {center}: the constant predictor's validation MAE "
                                 f"differs between rounds ({sorted(finite.unique())})")
            out[str(center)] = float(finite.iloc[0])
    return out


def training_curves_figure(history: pd.DataFrame, out_png: str | Path, *, scenario: str,
                           poisoned: str | None = None, loss: str = "l1") -> pd.DataFrame:
    """Write the two-panel training-curve figure of ``scenario`` and return the pooled MAE.

    ``history``: the scenario's ``history.tsv`` (one row per round and training center, columns
    at least round, center, train_loss; val_mae and val_voxels when the federation validates,
    val_mae NaN for a center without validation patients). ``poisoned``: the attacker's
    center, drawn dashed. ``loss``: the config's ``train.loss`` (``l1`` or ``mse``), for the y
    label only.

    Returns :func:`pooled_validation_mae` of ``history`` (columns round, val_mae_pooled, HU).
    Raises ValueError naming missing columns, or on an empty history.
    """
    missing = [c for c in REQUIRED if c not in history.columns]
    if missing:
        raise ValueError(f"{scenario}: training history lacks column(s) {missing}; it has "
                         f"{list(history.columns)}")
    if len(history) == 0:
        raise ValueError(f"{scenario}: training history is empty (no rounds recorded)")
    if loss not in LOSS_LABELS:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSS_LABELS)}")
    history = history.assign(**{c: np.nan for c in VALIDATION if c not in history.columns})
    pooled = pooled_validation_mae(history)
    reference = constant_lines(history)

    centers = sorted(history["center"].astype(str).unique())
    attacker = None if poisoned is None else str(poisoned)
    label = {c: f"{c} (poisoned)" if c == attacker else c for c in centers}
    data = history.assign(center=history["center"].astype(str))
    data["line"] = data["center"].map(label)
    data["val_mae"] = data["val_mae"].astype(float)
    # rc_context: the theme must not leak into image montages drawn later in the same process.
    with plt.rc_context():
        sns.set_theme(**STAT_THEME)
        colors = dict(zip(centers, sns.color_palette(n_colors=len(centers)), strict=True))
        palette = {label[c]: colors[c] for c in centers}
        dashes = {label[c]: (4, 2) if c == attacker else "" for c in centers}
        # One row per round and center: estimator=None draws the values as logged (no
        # averaging, no bootstrap, so the figure is deterministic).
        lines = {"x": "round", "hue": "line", "style": "line", "hue_order": list(palette),
                 "style_order": list(palette), "palette": palette, "dashes": dashes,
                 "markers": dict.fromkeys(palette, "o"), "markersize": 4, "lw": 1.4,
                 "estimator": None, "legend": False}

        fig, (ax_loss, ax_mae) = plt.subplots(1, 2, figsize=(10.0, 3.8), layout="constrained")
        sns.lineplot(data=data, y="train_loss", ax=ax_loss, **lines)
        if not np.isfinite(data["train_loss"].astype(float)).any():
            # DP-SGD clients send no training loss (an un-noised function of their slices:
            # fedaudit.defenses.dp_sgd.private)
            ax_loss.text(0.5, 0.5, "not reported\n(DP-SGD clients withhold their\n"
                         "un-noised training loss)", transform=ax_loss.transAxes,
                         ha="center", va="center", fontsize=9, color="grey")
        validated = data[np.isfinite(data["val_mae"])]
        if len(validated):
            sns.lineplot(data=validated, y="val_mae", ax=ax_mae, **lines)
        for center, value in reference.items():
            if center in colors:
                ax_mae.axhline(value, color=colors[center], lw=1.1, ls=":")
        pooled_ok = pooled[np.isfinite(pooled["val_mae_pooled"])]
        if len(pooled_ok):
            sns.lineplot(data=pooled_ok, x="round", y="val_mae_pooled", ax=ax_mae,
                         color="black", lw=2.6, estimator=None, legend=False)

        ax_loss.set_title("local training loss")
        ax_loss.set_ylabel(LOSS_LABELS[loss])
        ax_mae.set_title("validation MAE of the aggregated model (in-mask, axial slices)")
        if not len(pooled_ok):
            ax_mae.text(0.5, 0.5, "no validation patients", ha="center", va="center",
                        transform=ax_mae.transAxes, color="0.4")
        ax_mae.set_ylabel("validation MAE (HU)")
        for ax in (ax_loss, ax_mae):
            ax.set_xlabel("round")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # One legend outside both panels: inside, it would hide parts of the curves. Built
        # from the same palette and dashes so it names every center, validated or not.
        handles = [Line2D([], [], color=palette[name], lw=1.4, marker="o", ms=4,
                          ls="--" if dashes[name] else "-", label=name) for name in palette]
        if len(pooled_ok):
            handles.append(Line2D([], [], color="black", lw=2.6,
                                  label="all centers\n(voxel-weighted)"))
        if reference:
            handles.append(Line2D([], [], color="0.3", lw=1.1, ls=":",
                                  label="constant predictor\n(per center, dotted)"))
        fig.legend(handles=handles, title="center", loc="outside right center", frameon=False)
        suffix = f", center {poisoned} poisoned" if poisoned is not None else ""
        fig.suptitle(f"Training curves: scenario {scenario}{suffix}", fontsize=10)
        save(fig, str(out_png))
    return pooled
