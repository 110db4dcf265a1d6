"""The audit's verdict in a few sentences, generated from the numbers (the report's front page).

First the utility gate: the threat findings are only read as the security of a working model
when the federation (without SecAgg+) beats the constant predictor -- the training patients'
median HU everywhere in the head -- clearly on every evaluated center (MAE at most
``UTILITY_GATE`` x the constant's); otherwise the verdict opens by saying the federation did not
learn. Then the data-quality flags of preprocessing QC, and one finding per threat of paper 000,
each with a risk level and the numbers behind it:

- membership inference (FedMIA, Fig. 3): the lower 95 % bound of the pooled patient-level AUC
  against same-center non-members, with the patient counts, on the client updates and on the
  SecAgg+ masked vectors, read against the memorising positive control;
- gradient inversion (DLG, Fig. 2): the best UNet reconstruction's fitted SSIM (after the
  least-squares gain/offset fit); a low one is read only where the same UNet without BatchNorm,
  the positive control, was recovered (otherwise the attack at this budget is too weak to judge
  the model and the verdict says "inconclusive"); the MLP code check tells a weak attack from
  broken code;
- data poisoning (Table 3): the worst MAE increase on a clean center (not the poisoned one) at
  the highest noise level, under FedAvg and under each robust aggregation;
- the price of SecAgg+ in synthesis quality (Table 2).

The thresholds are this tool's conventions, not the paper's (the paper reports numbers, not
levels); they are module constants so an auditor can change them and they are printed in the
report. Poisoning uses the worst clean center (one exposed hospital is a finding); membership
uses the lower confidence bound over the pooled patients, because a per-center AUC from one or
two patients is noise, not a finding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedaudit.report.tables import OPTIMIZERS, pretty_aggregation

# A federation whose MAE exceeds this fraction of the constant predictor's on any center has not
# learned enough for its threat findings to describe a working model.
UTILITY_GATE = 0.8
# ROC-AUC of the membership attack: chance is 0.5.
MIA_HIGH, MIA_MODERATE = 0.8, 0.6
# The memorising federation must reach this patient-level AUC for a low AUC elsewhere to read as
# "no leak" rather than "attack too weak" (issue 12).
MIA_CONTROL_OK = 0.9
# SSIM of the best DLG reconstruction inside the head mask (1 = identical slice), after the
# least-squares gain/offset fit: with train-mode BatchNorm and batch 1 the shared gradient hides
# the MR's scale, so the unfitted score would measure a drifted scale, not leaked anatomy.
DLG_METRIC = "ssim_fit"
DLG_HIGH, DLG_MODERATE = 0.8, 0.5
# The BatchNorm-free UNet (the positive control) must reach this fitted SSIM for the UNet's score
# to be read, and the MLP code check must reach it for the attack code to count as working
# (issue 12).
DLG_CONTROL_OK = 0.9
# Relative MAE increase on a clean center caused by poisoning another one.
POISON_SEVERE, POISON_MEASURABLE = 0.25, 0.05
# Relative MAE change that counts as "no cost" of SecAgg+.
SECAGG_NEGLIGIBLE = 0.01


@dataclass(frozen=True)
class Finding:
    topic: str
    level: str  # "high", "moderate", "low", "inconclusive" or "info"
    sentence: str


def _level(value: float, high: float, moderate: float) -> str:
    return "high" if value >= high else "moderate" if value >= moderate else "low"


UTILITY_TOPIC = "Does the federation work? (utility gate)"


def utility_finding(quality: pd.DataFrame, *, plain: str = "baseline") -> Finding | None:
    """``quality``: the tidy frame of :func:`~fedaudit.report.tables.quality_table`. Level
    ``info`` when ``plain``'s MAE is at most :data:`UTILITY_GATE` x the constant predictor's on
    every center, else ``inconclusive`` (the front page then warns before every other finding).
    None when the table has no constant predictor."""
    ratio = quality[(quality["metric"] == "mae_vs_constant") & (quality["scenario"] == plain)]
    mae = quality[quality["metric"] == "mae"].pivot_table(index="center", columns="scenario",
                                                          values="mean")
    if ratio.empty or "constant" not in mae.columns:
        return None
    worst = ratio.loc[ratio["mean"].idxmax()]
    c = worst["center"]
    numbers = (f"{worst['mean']:.2f}× on center {c}: {mae.loc[c, plain]:.0f} HU vs "
               f"{mae.loc[c, 'constant']:.0f} HU")
    if worst["mean"] > UTILITY_GATE:
        return Finding(UTILITY_TOPIC, "inconclusive",
                       f"the federation did not learn: its MAE is {numbers} for the constant "
                       f"predictor (the training patients' median HU everywhere in the head), "
                       f"above the gate of {UTILITY_GATE}×. The threat findings below are "
                       f"measured on a model that does not work and cannot be read as the "
                       f"security of a working model.")
    return Finding(UTILITY_TOPIC, "info",
                   f"yes: on every evaluated center the federation's MAE is at most "
                   f"{worst['mean']:.2f}× the constant predictor's (worst {numbers}; best "
                   f"{ratio['mean'].min():.2f}×), within the gate of {UTILITY_GATE}×.")


def data_quality_finding(flags: dict) -> Finding:
    """``flags``: the ``qc_flags.json`` record
    (:func:`~fedaudit.preprocess.outliers.flags_record`)."""
    flagged = flags.get("flagged", {})
    topic = "Data quality (preprocessing QC)"
    if not flagged:
        return Finding(topic, "info", "no patient's QC numbers are outliers of its center "
                       f"(robust z below {flags.get('z_threshold', 3.5)}).")
    excluded = set(flags.get("excluded", []))
    parts = [f"{key} ({'excluded' if key in excluded else 'kept'}: {why})"
             for key, why in flagged.items()]
    verb = ("excluded from training, evaluation and the attacks" if excluded
            else "kept (preprocess.qc.flagged: keep): results include them")
    return Finding(topic, "moderate" if not excluded else "info",
                   f"{len(flagged)} patient(s) flagged as MR/CT pairs unlike their center's, "
                   f"{verb}: " + "; ".join(parts) + ".")


def _pooled(data: pd.DataFrame, scenario: str, view: str, unit: str, test: str = "membership"
            ) -> pd.Series | None:
    sel = data[(data["scenario"] == scenario) & (data["view"] == view) & (data["unit"] == unit)
               & (data["test"] == test) & (data["target"] == "all")
               & (data["level"] == "patient")]
    return None if sel.empty else sel.iloc[0]


def _mia_numbers(r: pd.Series) -> str:
    ci = (f"95% CI {r['ci_low']:.2f}–{r['ci_high']:.2f}" if np.isfinite(r["ci_low"])
          else "too few patients for a CI")
    return (f"AUC {r['auc']:.2f} ({ci}; {int(r['n_member_patients'])} member vs "
            f"{int(r['n_nonmember_patients'])} same-center held-out patients, permutation "
            f"p = {r['p_value']:.2f})")


def membership_finding(data: pd.DataFrame, unit: str = "slice") -> Finding:
    """``data``: the tidy frame of :func:`~fedaudit.report.tables.membership_table`; ``unit``:
    the candidate unit the verdict reads, fixed in advance (the first of
    ``attacks.fedmia.units``), never the better of the units measured.

    The level rests on the lower 95 % bound of the pooled patient-level AUC against same-center
    non-members (never on the best center), for the per-client views (client updates without
    SecAgg+, masked vectors with it); the memorising control says whether a low AUC means
    "no leak" or "attack too weak to tell"."""
    topic = "Membership inference (FedMIA)"
    if not (data["unit"] == unit).any():
        raise ValueError(f"the membership table has no rows for unit {unit!r} (has "
                         f"{sorted(set(data['unit']))})")
    audited = data[~data["control"].astype(bool)]
    control = data[data["control"].astype(bool)]
    parts, levels = [], []
    for view, label in (("update", "on the client updates"),
                        ("masked", "with SecAgg+, on the masked per-client vectors")):
        for scenario in dict.fromkeys(audited[audited["view"] == view]["scenario"]):
            r = _pooled(audited, scenario, view, unit)
            if r is None or not np.isfinite(r["auc"]):
                continue
            lo = r["ci_low"] if np.isfinite(r["ci_low"]) else 0.5
            level = _level(lo, MIA_HIGH, MIA_MODERATE) if r["p_value"] < 0.05 else "low"
            levels.append(level)
            parts.append(f"{scenario} {label}: {_mia_numbers(r)}, {level} risk by the lower "
                         "bound")
    for scenario in dict.fromkeys(audited[audited["view"] == "aggregate"]["scenario"]):
        r = _pooled(audited, scenario, "aggregate", unit)
        if r is not None and np.isfinite(r["auc"]):
            parts.append(f"{scenario} aggregate cosine (membership in the federation): "
                         f"AUC {r['auc']:.2f}")
    if not parts:
        return Finding(topic, "inconclusive", "no patient-level result was produced.")
    level = max(levels, key=["low", "moderate", "high"].index) if levels else "low"
    text = "; ".join(parts)
    if not control.empty:
        c = _pooled(control, control["scenario"].iloc[0], "update", unit)
        if c is not None and np.isfinite(c["auc"]):
            if c["auc"] >= MIA_CONTROL_OK:
                text += (f". The memorising control reaches {_mia_numbers(c)}: the attack works, "
                         "so a low AUC above means no leak at this budget")
            else:
                text += (f". The memorising control reaches only {_mia_numbers(c)} (needs ≥ "
                         f"{MIA_CONTROL_OK}): the attack's power is unproven here, so a low AUC "
                         "does not show that the federation resists")
                if level == "low":
                    level = "inconclusive"
    what = "batches of one patient's slices" if unit == "batch" else "single slices"
    return Finding(topic, level, f"{text} (candidates: {what}).")


def inversion_finding(data: pd.DataFrame) -> Finding:
    """``data``: the tidy frame of :func:`~fedaudit.report.tables.inversion_table`.

    A low UNet score is read only in the settings (scenario, center, optimiser) where the same
    UNet without BatchNorm (network ``control``) reaches fitted SSIM :data:`DLG_CONTROL_OK`:
    there it is the UNet's (its BatchNorm's) resistance, elsewhere it may be the attack budget's
    weakness on this architecture, and with no such setting the finding is "inconclusive". A
    UNet reconstruction at or above :data:`DLG_MODERATE` counts wherever it was made: a slice
    that came back shows the leak whatever the controls reach (as a failed memorising control
    only turns a *low* membership finding inconclusive). The MLP code check (network
    ``code_check``) says whether the attack code itself works."""
    keys = ["scenario", "center", "optimizer"]
    ssim = data[data["metric"] == DLG_METRIC]
    wide = ssim.pivot_table(index=keys, columns="network", values="value", aggfunc="first")
    topic = "Gradient inversion (DLG)"
    if "unet" not in wide.columns or not np.isfinite(wide["unet"]).any():
        return Finding(topic, "inconclusive", "no UNet reconstruction was scored.")
    col = {n: wide[n] if n in wide.columns else pd.Series(np.nan, wide.index)
           for n in ("unet", "control", "code_check")}
    ok = col["control"] >= DLG_CONTROL_OK  # NaN (control not run) is not a pass
    best_control = float(col["control"].max())
    control = (f"fitted SSIM {best_control:.2f}" if np.isfinite(best_control) else "not run")
    check = col["code_check"]
    if check.notna().all() and (check >= DLG_CONTROL_OK).all():
        code = (f"the MLP code check is recovered in every setting (fitted SSIM ≥ "
                f"{check.min():.2f}), so the attack code works")
    elif check.notna().any():
        code = (f"the MLP code check is not recovered{'' if ok.any() else ' either'} (worst "
                f"fitted SSIM {check.min():.2f}; needs ≥ {DLG_CONTROL_OK}), so the attack "
                "setting or code is broken")
    else:
        code = "the MLP code check was not run, so the attack code is untested"

    def where(key: tuple) -> str:
        return f"center {key[1]}, {OPTIMIZERS.get(key[2], key[2])}"

    best_key = col["unet"].idxmax()
    best_unet = float(col["unet"].loc[best_key])
    whats = {"low": "only coarse shape comes back",
             "moderate": "recognisable anatomy comes back",
             "high": "the private slice comes back"}
    if best_unet >= DLG_MODERATE:
        level = _level(best_unet, DLG_HIGH, DLG_MODERATE)
        return Finding(topic, level,
                       f"{level} risk: {whats[level]} (best UNet SSIM {best_unet:.2f} after a "
                       f"gain/offset fit, {where(best_key)}): a reconstruction this close shows "
                       f"the leak whatever the controls reach (the BatchNorm-free UNet: best "
                       f"{control}); {code}.")
    if not ok.any():
        return Finding(topic, "inconclusive",
                       f"inconclusive: DLG at this budget does not recover even the "
                       f"BatchNorm-free UNet ({control}; needs ≥ {DLG_CONTROL_OK}), so the "
                       f"UNet's best fitted SSIM of {best_unet:.2f} does not show that it "
                       f"resists; {code}.")
    read = col["unet"][ok]
    read_key = read.idxmax()
    partly = "" if ok.all() else (
        f"; read only in the {int(ok.sum())} of {len(ok)} center × optimiser settings where "
        f"the BatchNorm-free UNet is recovered, {best_unet:.2f} over all")
    return Finding(topic, "low",
                   f"low risk: {whats['low']} (best UNet SSIM {float(read.loc[read_key]):.2f} "
                   f"after a gain/offset fit, {where(read_key)}{partly}), while the same attack "
                   f"on the same UNet without BatchNorm recovers its slice (fitted SSIM ≥ "
                   f"{col['control'][ok].min():.2f}), so the attack reaches this architecture "
                   f"and the model resists it; {code}.")


def _worst_clean(grid: pd.DataFrame) -> pd.Series | None:
    g = grid[(grid["poisoned"] != grid["evaluated"]) & np.isfinite(grid["reference_mae"])]
    if g.empty:
        return None
    g = g.assign(rel=(g["mae"] - g["reference_mae"]) / g["reference_mae"])
    return g.loc[g["rel"].idxmax()]


def poisoning_findings(grid: pd.DataFrame) -> list[Finding]:
    """``grid``: :func:`~fedaudit.report.tables.poisoning_grid` (one finding per aggregation)."""
    gamma = float(grid["gamma"].max())
    out = []
    for agg in dict.fromkeys(grid["aggregation"]):
        worst = _worst_clean(grid[(grid["aggregation"] == agg) & (grid["gamma"] == gamma)])
        if worst is None:
            continue
        rel = float(worst["rel"])
        level = ("high" if rel >= POISON_SEVERE else "moderate" if rel >= POISON_MEASURABLE
                 else "low")
        delta = worst["mae"] - worst["reference_mae"]
        out.append(Finding(
            f"Data poisoning under {pretty_aggregation(agg)}", level,
            f"{level} risk: noise γ = {gamma:.1f} on center {worst['poisoned']}'s data raises the "
            f"MAE on clean center {worst['evaluated']} by {delta:+.0f} HU ({rel:+.0%}; "
            f"{worst['reference_mae']:.0f} → {worst['mae']:.0f} HU), the worst clean center."))
    return out


def secagg_cost_finding(quality: pd.DataFrame) -> Finding | None:
    """``quality``: the tidy frame of :func:`~fedaudit.report.tables.quality_table`."""
    fed = quality[quality["secagg"].isin([True, False])]  # the constant predictor is neither
    mae = fed[fed["metric"] == "mae"].pivot_table(index="center", columns="secagg", values="mean")
    if True not in mae.columns or False not in mae.columns:
        return None
    rel = (mae[True] - mae[False]) / mae[False]
    worst = rel.abs().idxmax()
    delta = mae.loc[worst, True] - mae.loc[worst, False]
    # A cost is a loss of quality: a lower MAE with SecAgg+ (its quantisation nudges the training
    # trajectory) is no cost, whatever its size.
    cost = "a measurable" if rel.max() >= SECAGG_NEGLIGIBLE else "no"
    sign = " (negative: lower with SecAgg+)" if delta < 0 else ""
    return Finding("Price of SecAgg+", "info",
                   f"SecAgg+ costs {cost} synthesis quality: the largest MAE change is "
                   f"{delta:+.1f} HU ({rel[worst]:+.1%}, center {worst}){sign}; the largest "
                   f"increase is {rel.max():+.1%}.")


def thresholds_text() -> str:
    return (f"Utility gate: federation MAE ≤ {UTILITY_GATE}× the constant predictor's on every "
            f"center. Risk levels: membership, the lower 95% bound of the pooled patient-level AUC "
            f"(permutation p < 0.05) ≥ {MIA_HIGH} high, ≥ {MIA_MODERATE} moderate, read only "
            f"when the memorising control reaches AUC ≥ {MIA_CONTROL_OK}; "
            f"DLG UNet SSIM after a least-squares gain/offset fit ≥ {DLG_HIGH} high, ≥ "
            f"{DLG_MODERATE} moderate, a lower one read only where the same UNet without "
            f"BatchNorm (the positive control) reaches fitted SSIM ≥ {DLG_CONTROL_OK}; the MLP "
            f"code check must reach it for the attack code to count as working; poisoning: MAE "
            f"increase "
            f"on a clean center ≥ "
            f"{POISON_SEVERE:.0%} high, ≥ {POISON_MEASURABLE:.0%} moderate; worst center counts.")


def front_page(intro_rst: str, findings: list[Finding], *, demo: bool) -> str:
    """The report's front page: the introduction's first paragraph (what was audited), the
    verdict as an RST list, then the rest of the introduction (how the audit works)."""
    first, _, rest = intro_rst.strip().partition("\n\n")
    lines = [first, "", "Audit verdict", "-------------", ""]
    if any(f.topic == UTILITY_TOPIC and f.level == "inconclusive" for f in findings):
        lines += ["**The federation did not learn the task** (see the utility gate below): read "
                  "every threat finding as a property of a broken model, not of the framework.",
                  ""]
    if demo:
        lines += ["These numbers come from the synthetic demo data and a CPU-sized federation: "
                  "they show how the audit reads, not the security of a real deployment.", ""]
    for f in findings:
        lines.append(f"- **{f.topic}**: {f.sentence}")
    if not findings:
        lines.append("- No attack or scenario results were produced by this configuration.")
    lines += ["", thresholds_text(), ""]
    if rest:
        lines += ["How the audit works", "-------------------", "", rest, ""]
    return "\n".join(lines)
