"""The evasion attack's figures (paper 004 Figs. 2-3 and its α study), from the rates table and
the example arrays the attack writes (no torch):

- :func:`epsilon_figure`: ASR against ε, one panel per attack, for the attacker's own model
  (white-box, with its exact 95% interval), the final global model and the victims' AASR
  (transfer), the random ±ε null beside them (paper 004 Fig. 3: adversary and other clients);
- :func:`alpha_figure`: ASR against the step α of BIM and PGD at the primary ε (paper 004
  §V-B), α = ε/4 marked;
- :func:`example_figure`: one slice, clean and perturbed MR, the perturbation ×10, the clean
  sCT and how the attack changed the white-box and the global sCT (paper 004 Fig. 2's view of
  imperceptibility, plus what it does to the synthesis).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fedaudit.plots.style import STAT_THEME, apply_style, hu_limits, save

ATTACK_NAMES = {"fgsm": "FGSM", "bim": "BIM", "pgd": "PGD"}


def _flag(s: pd.Series) -> pd.Series:
    return s.astype(str).str.lower().isin(["true", "1", "1.0"])


def _curves(frame: pd.DataFrame, x: str) -> dict[str, pd.DataFrame]:
    """x -> white-box ASR with CI, global ASR and the victims' AASR, sorted by x."""
    out = {}
    wb = frame[frame["role"] == "whitebox"].sort_values(x)
    out["attacker's own model (white-box)"] = wb[[x, "asr", "ci_low", "ci_high"]]
    gl = frame[frame["role"] == "global"].sort_values(x)
    out["final global model"] = gl[[x, "asr"]]
    vic = frame[frame["role"] == "victim"]
    if len(vic):
        out["other clients (AASR)"] = (vic.groupby(x, as_index=False)["asr"].mean()
                                       .sort_values(x))
    return out


def _draw_curves(ax: Any, frame: pd.DataFrame, x: str, colors: Any) -> None:
    """One panel's curves (:func:`_curves`) against ``x``, the white-box CI as a band."""
    for (name, curve), color, style in zip(_curves(frame, x).items(), colors,
                                           ("o-", "s--", "^:"), strict=False):
        ax.plot(curve[x], curve["asr"], style, color=color, label=name)
        if "ci_low" in curve:
            ax.fill_between(curve[x], curve["ci_low"], curve["ci_high"],
                            color=color, alpha=0.15, linewidth=0)


def epsilon_figure(rates: pd.DataFrame, scenario: str, path: str) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(**STAT_THEME)
    apply_style()
    sub = rates[(rates["scenario"] == scenario) & (rates["goal"] == "untargeted")
                & _flag(rates["sweep_epsilon"])]
    attacks = [m for m in ATTACK_NAMES if m in set(sub["method"])]
    null = sub[sub["method"] == "random"]
    fig, axes = plt.subplots(1, max(1, len(attacks)), figsize=(3.6 * max(1, len(attacks)), 3.4),
                             sharey=True, squeeze=False)
    colors = sns.color_palette("colorblind", 4)
    for ax, method in zip(axes[0], attacks, strict=False):
        frame = sub[sub["method"] == method]
        steps = frame["steps"].max()
        _draw_curves(ax, frame, "epsilon", colors)
        n_wb = null[null["role"] == "whitebox"].sort_values("epsilon")
        ax.plot(n_wb["epsilon"], n_wb["asr"], "x-", color="grey",
                label="random ±ε (white-box model)")
        ax.set_title(ATTACK_NAMES[method] + ("" if method == "fgsm" else f"-{steps}"))
        ax.set_xlabel("ε (L∞, MR scale [0, 1])")
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].set_ylabel("ASR (share of slices, ΔMAE > threshold)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    n = int(sub["n_slices"].max()) if len(sub) else 0
    fig.suptitle(f"Evasion against ε ({scenario}; {n} attacked slices; band: exact 95% CI "
                 "of the white-box ASR)", fontsize=9)
    save(fig, path)


def alpha_figure(rates: pd.DataFrame, scenario: str, path: str) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(**STAT_THEME)
    apply_style()
    sub = rates[(rates["scenario"] == scenario) & (rates["goal"] == "untargeted")
                & _flag(rates["sweep_alpha"])]
    attacks = [m for m in ("bim", "pgd") if m in set(sub["method"])]
    fig, axes = plt.subplots(1, max(1, len(attacks)), figsize=(3.8 * max(1, len(attacks)), 3.4),
                             sharey=True, squeeze=False)
    colors = sns.color_palette("colorblind", 4)
    for ax, method in zip(axes[0], attacks, strict=False):
        frame = sub[sub["method"] == method]
        eps = float(frame["epsilon"].iloc[0])
        _draw_curves(ax, frame, "alpha", colors)
        ax.axvline(eps / 4, color="grey", linestyle=":", linewidth=1)
        # at the top: the legend sits at the bottom right
        ax.annotate(" ε/4", (eps / 4, 0.99), fontsize=7, color="grey", va="top")
        ax.set_xscale("log")
        alphas = sorted(frame["alpha"].unique())
        ax.set_xticks(alphas, [f"{a:.3g}" for a in alphas], rotation=35, fontsize=7)
        ax.minorticks_off()
        ax.set_title(f"{ATTACK_NAMES[method]}-{int(frame['steps'].iloc[0])}, ε = {eps:g}")
        ax.set_xlabel("step α")
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].set_ylabel("ASR (share of slices, ΔMAE > threshold)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Evasion against the step α ({scenario})", fontsize=9)
    save(fig, path)


def example_figure(arrays: dict[str, Any], scenario: str, path: str) -> None:
    import matplotlib.pyplot as plt

    apply_style()
    if "mr" not in arrays:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{scenario}: nothing was crafted (no usable attacker model)",
                ha="center", va="center", fontsize=8)
        save(fig, path)
        return
    mr, adv, mask = arrays["mr"], arrays["mr_adv"], arrays["mask"].astype(bool)
    eps = float(arrays["epsilon"])
    delta = (adv - mr) * 10.0
    lo, hi = hu_limits("wide")
    change_wb = np.where(mask, arrays["whitebox_sct_adv"] - arrays["whitebox_sct"], 0.0)
    panels = [("MR, clean", mr, "gray", (0, 1)),
              (f"MR, {arrays['label']} (ε = {eps:g})", adv, "gray", (0, 1)),
              ("perturbation × 10", delta, "RdBu_r", (-10 * eps, 10 * eps)),
              (f"sCT, white-box {arrays['whitebox_name']} (HU)",
               np.where(mask, arrays["whitebox_sct"], -1000.0), "gray", (lo, hi))]
    changes = [(f"sCT change, white-box {arrays['whitebox_name']} (HU)", change_wb)]
    if "global_sct" in arrays:
        changes.append(("sCT change, global model (HU)",
                        np.where(mask, arrays["global_sct_adv"] - arrays["global_sct"], 0.0)))
    lim = max(50.0, float(max(np.abs(c).max() for _, c in changes)))
    panels += [(t, c, "RdBu_r", (-lim, lim)) for t, c in changes]
    # constrained layout: each colour bar's ticks get room of their own, clear of the next
    # panel and its title (two-line titles keep the panels narrow)
    fig, axes = plt.subplots(1, len(panels), figsize=(2.9 * len(panels), 3.3),
                             layout="constrained")
    for ax, (title, img, cmap, (vmin, vmax)) in zip(axes, panels, strict=True):
        im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(title.replace(", ", ",\n", 1), fontsize=8)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
    fig.suptitle(f"{scenario}: patient {arrays['patient']}, axial slice "
                 f"{int(arrays['axial_index'])} (the median white-box ΔMAE); sCT window "
                 f"[{lo:.0f}, {hi:.0f}] HU", fontsize=9)
    save(fig, path)
