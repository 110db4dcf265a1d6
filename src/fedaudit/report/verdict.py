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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedaudit.report.levels import NEEDS_POWER, Level, rules_text
from fedaudit.report.tables import pretty_aggregation

# A federation whose MAE exceeds this fraction of the constant predictor's on any center has not
# learned enough for its threat findings to describe a working model.
UTILITY_GATE = 0.8
# Relative MAE increase on a clean center caused by poisoning another one.
POISON_SEVERE, POISON_MEASURABLE = 0.25, 0.05
# Relative MAE change that counts as "no cost" of SecAgg+.
SECAGG_NEGLIGIBLE = 0.01


@dataclass(frozen=True)
class Finding:
    """One line of the verdict: its topic, its level (:class:`~fedaudit.report.levels.Level`,
    a level's name is accepted) and the numbers behind it. ``power`` says why the test could
    have seen an effect; a level that claims the model held (:data:`NEEDS_POWER`) must give
    it."""

    topic: str
    level: Level
    sentence: str
    power: str = ""

    def __post_init__(self) -> None:
        try:
            level = Level(self.level)
        except ValueError:
            raise ValueError(f"finding {self.topic!r}: level {self.level!r} is not a verdict "
                             f"level ({', '.join(v.value for v in Level)})") from None
        object.__setattr__(self, "level", level)
        if level in NEEDS_POWER and not self.power.strip():
            raise ValueError(f"finding {self.topic!r}: a {level.value!r} finding states the "
                             "test's power (power=...)")

    @property
    def text(self) -> str:
        """The sentence, with the test's power when it has one."""
        return self.sentence + (f" Power: {self.power}" if self.power else "")


UTILITY_TOPIC = "Does the federation work? (utility gate)"


def utility_finding(quality: pd.DataFrame, *, plain: str = "baseline") -> Finding | None:
    """``quality``: the tidy frame of :func:`~fedaudit.report.tables.quality_table`. Level
    ``info`` when ``plain``'s MAE is at most :data:`UTILITY_GATE` x the constant predictor's on
    every center, else ``no usable model`` (the front page then warns before every other
    finding).
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
        return Finding(UTILITY_TOPIC, Level.NO_MODEL,
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
    left_out = flags.get("left_out", [])
    # patients the config left out (preprocess.exclude): never preprocessed, trained or attacked
    prefix = (f"{len(left_out)} patient(s) left out of the study by the configuration "
              f"(preprocess.exclude): {', '.join(left_out)}. " if left_out else "")
    if not flagged:
        return Finding(topic, "info", prefix + "no patient's QC numbers are outliers of its "
                       f"center (robust z below {flags['z_threshold']}).")
    excluded = set(flags.get("excluded", []))
    parts = [f"{key} ({'excluded' if key in excluded else 'kept'}: {why})"
             for key, why in flagged.items()]
    verb = ("excluded from training, evaluation and the attacks" if excluded
            else "kept (preprocess.qc.flagged: keep): results include them")
    return Finding(topic, "moderate" if not excluded else "info",
                   prefix + f"{len(flagged)} patient(s) flagged as MR/CT pairs unlike their "
                   "center's, "
                   f"{verb}: " + "; ".join(parts) + ".")


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
        delta = worst["mae"] - worst["reference_mae"]
        numbers = (f"noise γ = {gamma:.1f} on center {worst['poisoned']}'s data "
                   f"{'raises' if delta >= 0 else 'changes'} the MAE on clean center "
                   f"{worst['evaluated']} by {delta:+.0f} HU ({rel:+.0%}; "
                   f"{worst['reference_mae']:.0f} → {worst['mae']:.0f} HU), the worst clean "
                   "center")
        topic = f"Data poisoning under {pretty_aggregation(agg)}"
        if rel < POISON_MEASURABLE:
            out.append(Finding(topic, Level.NOT_DETECTED, f"not detected: {numbers}.",
                               power=f"one training run per scenario: an increase below "
                                     f"{POISON_MEASURABLE:.0%} is not told from run-to-run "
                                     "variation."))
            continue
        level = Level.HIGH if rel >= POISON_SEVERE else Level.MODERATE
        out.append(Finding(topic, level, f"{level.value} risk: {numbers}."))
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


def poisoning_thresholds(settings: dict | None = None) -> str:
    return (f"poisoning: MAE increase on a clean center ≥ {POISON_SEVERE:.0%} high, ≥ "
            f"{POISON_MEASURABLE:.0%} moderate, below it not detected; worst center counts")


def thresholds_text(parts: list[str]) -> str:
    """The utility gate and every table's risk levels (``TableSpec.thresholds``), one line."""
    head = (f"Utility gate: federation MAE ≤ {UTILITY_GATE}× the constant predictor's on every "
            "center.")
    return (head + (" Risk levels: " + "; ".join(parts) + "." if parts else "")
            + " Verdict levels: " + rules_text() + ".")


def attackers_text(attackers: Sequence[tuple[str, str, Sequence[str]]]) -> list[str]:
    """Who attacks with what: per attacker's view (title, what it holds, the titles of the
    attacks run with it), one RST list item."""
    if not attackers:
        return []
    lines = ["The attackers audited, each with only what it holds:", ""]
    lines += [f"- **{title}** ({holds}): {'; '.join(attacks)}."
              for title, holds, attacks in attackers]
    return lines + [""]


def front_page(intro_rst: str, findings: list[Finding], *, demo: bool,
               thresholds: list[str] = (),
               attackers: Sequence[tuple[str, str, Sequence[str]]] = ()) -> str:
    """The report's front page: the introduction's first paragraph (what was audited), the
    verdict as an RST list, then the rest of the introduction (how the audit works) with the
    attackers audited (:func:`attackers_text`)."""
    first, _, rest = intro_rst.strip().partition("\n\n")
    lines = [first, "", "Audit verdict", "-------------", ""]
    if any(f.topic == UTILITY_TOPIC and f.level == Level.NO_MODEL for f in findings):
        lines += ["**The federation did not learn the task** (see the utility gate below): read "
                  "every threat finding as a property of a broken model, not of the framework.",
                  ""]
    if demo:
        lines += ["These numbers come from the synthetic demo data and a CPU-sized federation: "
                  "they show how the audit reads, not the security of a real deployment.", ""]
    for f in findings:
        lines.append(f"- **{f.topic}**: {f.text}")
    if not findings:
        lines.append("- No attack or scenario results were produced by this configuration.")
    lines += ["", thresholds_text(list(thresholds)), ""]
    if rest or attackers:
        lines += ["How the audit works", "-------------------", ""]
        lines += ([rest, ""] if rest else []) + attackers_text(attackers)
    return "\n".join(lines)
