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
from dataclasses import replace

import numpy as np
import pandas as pd

from fedaudit.report.levels import ADVICE, RULES, SEVERITY, Finding, Level
from fedaudit.report.seeds import (
    across_seeds,
    beyond_spread,
    by_seed,
    holm,
    range_text,
    spread,
)
from fedaudit.report.tables import pretty_aggregation

# A federation whose MAE exceeds this fraction of the constant predictor's on any center has not
# learned enough for its threat findings to describe a working model.
UTILITY_GATE = 0.8
# Relative MAE increase on a clean center caused by poisoning another one.
POISON_SEVERE, POISON_MEASURABLE = 0.25, 0.05
# Relative MAE change that counts as "no cost" of SecAgg+.
SECAGG_NEGLIGIBLE = 0.01


UTILITY_TOPIC = "Does the federation work? (utility gate)"


def utility_finding(quality: pd.DataFrame, *, plain: str = "baseline") -> Finding | None:
    """``quality``: the tidy frame of :func:`~fedaudit.report.tables.quality_table`. Level
    ``info`` when ``plain``'s MAE is at most :data:`UTILITY_GATE` x the constant predictor's on
    every center, else ``no usable model`` (the front page then warns before every other
    finding). With several training seeds the gate is read on each
    (:func:`fedaudit.report.seeds.across_seeds`): it holds only if it holds on every seed.
    None when the table has no constant predictor."""
    per = [(seed, f, worst) for seed, q in by_seed(quality)
           if (got := _utility_one(q, plain)) is not None for f, worst in [got]]
    if not per:
        return None
    if per[0][0] is None:
        return per[0][1]
    return across_seeds([(s, f) for s, f, _ in per], number="worst MAE ÷ constant",
                        values={s: w for s, _, w in per}, unit="×")


def _utility_one(quality: pd.DataFrame, plain: str) -> tuple[Finding, float] | None:
    """The gate on one training run: its finding and the worst MAE ÷ constant."""
    ratio = quality[(quality["metric"] == "mae_vs_constant") & (quality["scenario"] == plain)]
    mae = quality[quality["metric"] == "mae"].pivot_table(index="center", columns="scenario",
                                                          values="mean")
    if ratio.empty or "constant" not in mae.columns:
        return None
    worst = ratio.loc[ratio["mean"].idxmax()]
    c = worst["center"]
    numbers = (f"{worst['mean']:.2f}× on center {c}: {mae.loc[c, plain]:.0f} HU vs "
               f"{mae.loc[c, 'constant']:.0f} HU")
    # the summary table's cells
    summary = {"number": f"worst MAE {worst['mean']:.2f}× the constant's (center {c}; gate "
                         f"{UTILITY_GATE}×)",
               "control": "the constant predictor (median HU everywhere in the head)"}
    if worst["mean"] > UTILITY_GATE:
        return Finding(UTILITY_TOPIC, Level.NO_MODEL,
                       f"the federation did not learn: its MAE is {numbers} for the constant "
                       f"predictor (the training patients' median HU everywhere in the head), "
                       f"above the gate of {UTILITY_GATE}×. The threat findings below are "
                       f"measured on a model that does not work and cannot be read as the "
                       f"security of a working model.", **summary), float(worst["mean"])
    return Finding(UTILITY_TOPIC, "info",
                   f"yes: on every evaluated center the federation's MAE is at most "
                   f"{worst['mean']:.2f}× the constant predictor's (worst {numbers}; best "
                   f"{ratio['mean'].min():.2f}×), within the gate of {UTILITY_GATE}×.",
                   **summary), float(worst["mean"])


def data_quality_finding(flags: dict) -> Finding:
    """``flags``: the ``qc_flags.json`` record
    (:func:`~fedaudit.preprocess.outliers.flags_record`)."""
    flagged = flags.get("flagged", {})
    topic = "Data quality (preprocessing QC)"
    left_out = flags.get("left_out", [])
    # patients the config left out (preprocess.exclude): never preprocessed, trained or attacked
    prefix = (f"{len(left_out)} patient(s) left out of the study by the configuration "
              f"(preprocess.exclude): {', '.join(left_out)}. " if left_out else "")
    # patients whose data could not be preprocessed (preprocess.on_error: exclude): no volumes,
    # so neither trained on, evaluated nor attacked; each with the step and error qc.tsv records
    failed = flags.get("failed", {})
    if failed:
        prefix += (f"{len(failed)} patient(s) could not be preprocessed and were left out "
                   "(preprocess.on_error: exclude): "
                   + "; ".join(f"{key} (failed at {why})" for key, why in failed.items()) + ". ")
    summary = {"number": f"{len(flagged)} flagged, {len(failed)} failed, {len(left_out)} "
                         "left out by the config",
               "control": f"each center's other patients (robust z {flags['z_threshold']})"}
    if not flagged:
        return Finding(topic, "info", prefix + "no patient's QC numbers are outliers of its "
                       f"center (robust z below {flags['z_threshold']}).", **summary)
    # of the flagged patients (the failed ones are excluded too, whatever the QC policy)
    excluded = set(flags.get("excluded", [])) & set(flagged)
    parts = [f"{key} ({'excluded' if key in excluded else 'kept'}: {why})"
             for key, why in flagged.items()]
    verb = ("excluded from training, evaluation and the attacks" if excluded
            else "kept (preprocess.qc.flagged: keep): results include them")
    return Finding(topic, "moderate" if not excluded else "info",
                   prefix + f"{len(flagged)} patient(s) flagged as MR/CT pairs unlike their "
                   "center's, "
                   f"{verb}: " + "; ".join(parts) + ".", **summary)


def _worst_clean(grid: pd.DataFrame) -> pd.Series | None:
    g = grid[(grid["poisoned"] != grid["evaluated"]) & np.isfinite(grid["reference_mae"])]
    if g.empty:
        return None
    g = g.assign(rel=(g["mae"] - g["reference_mae"]) / g["reference_mae"])
    return g.loc[g["rel"].idxmax()]


def poisoning_findings(grid: pd.DataFrame) -> list[Finding]:
    """``grid``: :func:`~fedaudit.report.tables.poisoning_grid` (one finding per aggregation).
    With several training seeds each seed is read as one run -- its risk claimed only when the
    increase on its worst clean center exceeds the seed-to-seed spread of the unpoisoned
    federation's MAE there -- and the line reads across them
    (:func:`fedaudit.report.seeds.across_seeds`: a level that varies is said to)."""
    runs = by_seed(grid)
    gamma = float(grid["gamma"].max())
    out = []
    for agg in dict.fromkeys(grid["aggregation"]):
        cells = [(seed, g[(g["aggregation"] == agg) & (g["gamma"] == gamma)]) for seed, g in runs]
        per = [(seed, w) for seed, g in cells if (w := _worst_clean(g)) is not None]
        if not per:
            continue
        topic = f"Data poisoning under {pretty_aggregation(agg)}"
        found = [(seed, _poisoning_one(topic, gamma, w, _reference_spread(cells, w)))
                 for seed, w in per]
        if per[0][0] is None:
            out.append(found[0][1])
            continue
        out.append(across_seeds(found, number="increase on the worst clean center",
                                values={s: float(w["rel"]) * 100 for s, w in per},
                                fmt="+.0f", unit=" %"))
    return out


def _reference_spread(cells: list[tuple[int | None, pd.DataFrame]], worst: pd.Series) -> float:
    """The seed-to-seed spread (HU) of the unpoisoned federation's MAE on ``worst``'s clean
    center, over the seeds' grids ``cells``; NaN with one seed."""
    return spread([float(r["reference_mae"].iloc[0]) for _, g in cells
                   if len(r := g[(g["poisoned"] == worst["poisoned"])
                                 & (g["evaluated"] == worst["evaluated"])])])


def _poisoning_one(topic: str, gamma: float, worst: pd.Series, width: float) -> Finding:
    """One run's poisoning line; ``width``: the unpoisoned federation's seed-to-seed spread at
    the worst clean center (NaN: one seed), which a claimed increase must exceed."""
    rel = float(worst["rel"])
    delta = worst["mae"] - worst["reference_mae"]
    numbers = (f"noise γ = {gamma:.1f} on center {worst['poisoned']}'s data "
               f"{'raises' if delta >= 0 else 'changes'} the MAE on clean center "
               f"{worst['evaluated']} by {delta:+.0f} HU ({rel:+.0%}; "
               f"{worst['reference_mae']:.0f} → {worst['mae']:.0f} HU), the worst clean "
               "center")
    # the summary table's cells
    summary = {"number": f"clean center {worst['evaluated']} {delta:+.0f} HU ({rel:+.0%}) at "
                         f"γ = {gamma:.1f}",
               "control": "the same federation unpoisoned" + (
                   f" (seed-to-seed spread {width:.1f} HU)" if np.isfinite(width) else "")}
    if rel < POISON_MEASURABLE:
        return Finding(topic, Level.NOT_DETECTED, f"not detected: {numbers}.",
                       power=f"an increase below {POISON_MEASURABLE:.0%} is not told from "
                             "run-to-run variation.", **summary)
    if np.isfinite(width) and not delta > width:
        return Finding(topic, Level.NOT_DETECTED, f"not detected: {numbers}.",
                       power=f"the increase does not exceed the unpoisoned federation's "
                             f"seed-to-seed spread there ({width:.1f} HU).", **summary)
    level = Level.HIGH if rel >= POISON_SEVERE else Level.MODERATE
    return Finding(topic, level, f"{level.value} risk: {numbers}.", **summary)


def secagg_cost_finding(quality: pd.DataFrame) -> Finding | None:
    """``quality``: the tidy frame of :func:`~fedaudit.report.tables.quality_table`. SecAgg+
    costs synthesis quality only when the increase of the MAE averaged over the evaluated
    centers exceeds, on every training seed, the seed-to-seed spread of that average without it
    (:func:`fedaudit.report.seeds.beyond_spread`): one claim, not the largest of one per
    center, whose per-center numbers are reported beside it. With one seed the spread is
    unknown and no cost is claimed, whatever the difference."""
    runs = []
    for seed, q in by_seed(quality):
        fed = q[q["secagg"].isin([True, False])]  # the constant predictor is neither
        mae = fed[fed["metric"] == "mae"].pivot_table(index="center", columns="secagg",
                                                      values="mean")
        if True in mae.columns and False in mae.columns:
            runs.append((seed, mae))
    if not runs:
        return None
    mae = runs[0][1]
    rel = (mae[True] - mae[False]) / mae[False]
    worst = rel.abs().idxmax()
    delta = mae.loc[worst, True] - mae.loc[worst, False]
    sign = " (negative: lower with SecAgg+)" if delta < 0 else ""
    numbers = (f"the largest MAE change is {delta:+.1f} HU ({rel[worst]:+.1%}, center "
               f"{worst}){sign}; the largest increase is {rel.max():+.1%}")
    first = {"number": f"largest MAE change {delta:+.1f} HU (center {worst})",
             "control": "the same federation without SecAgg+"}
    if len(runs) == 1:
        seed = "" if runs[0][0] is None else f" ({runs[0][0]})"
        return Finding("Price of SecAgg+", "info",
                       f"no cost is claimed: on one training seed{seed} {numbers}, and with "
                       "one seed the federation's run-to-run variation, which such a "
                       "difference must exceed, is not measured (config seeds: two or more "
                       "measure it).", **first)
    # A cost is a loss of quality: a lower MAE with SecAgg+ (its quantisation nudges the training
    # trajectory) is no cost, whatever its size. One claim, on the MAE averaged over the evaluated
    # centers: a cost on "any" center would be the largest of several comparisons, and with two
    # seeds one center's increase exceeds its spread by chance often enough that such a claim
    # appeared on one demo (center E, +4.1 / +4.9 HU against a 2.3 HU spread) and reversed on the
    # next (E −9.4 / −9.2 HU). The centers are reported, not claimed one by one.
    seeds = [s for s, _ in runs]
    centers = [c for c in mae.index if all(c in m.index for _, m in runs)]
    cost = [float(m.loc[centers, True].mean() - m.loc[centers, False].mean()) for _, m in runs]
    plain = [float(m.loc[centers, False].mean()) for _, m in runs]
    width = spread(plain)
    pooled = range_text(dict(zip(seeds, cost, strict=True)), "+.1f")
    each = {c: [float(m.loc[c, True] - m.loc[c, False]) for _, m in runs] for c in centers}
    top = max(centers, key=lambda c: max(each[c]))
    top_text = (f"per center (not claimed one by one: the largest of {len(centers)} "
                f"comparisons), the largest increase is on center {top}: "
                f"{range_text(dict(zip(seeds, each[top], strict=True)), '+.1f')} HU against a "
                f"spread of {spread([float(m.loc[top, False]) for _, m in runs]):.1f} HU there")
    mean_of = f"the MAE averaged over the {len(centers)} evaluated centers"
    summary = {"number": f"mean MAE {pooled} HU across {len(seeds)} seeds",
               "control": f"without SecAgg+ (seed-to-seed spread {width:.1f} HU)"}
    if beyond_spread(cost, plain) and min(cost) / max(plain) >= SECAGG_NEGLIGIBLE:
        return Finding("Price of SecAgg+", "info",
                       f"SecAgg+ costs a measurable synthesis quality, beyond the seed-to-seed "
                       f"spread on all {len(seeds)} training seeds: {mean_of} rises by {pooled} "
                       f"HU (spread without SecAgg+ {width:.1f} HU); {top_text}. Seed "
                       f"{seeds[0]}: {numbers}.", **summary)
    return Finding("Price of SecAgg+", "info",
                   f"no cost beyond run-to-run variation: on {len(seeds)} training seeds "
                   f"{mean_of} changes by {pooled} HU, while without SecAgg+ it varies by "
                   f"{width:.1f} HU from seed to seed; {top_text}. Seed {seeds[0]}: {numbers}.",
                   **summary)


def poisoning_thresholds(settings: dict | None = None) -> str:
    return (f"poisoning: MAE increase on a clean center ≥ {POISON_SEVERE:.0%} high, ≥ "
            f"{POISON_MEASURABLE:.0%} moderate, below it not detected; worst center counts")


def thresholds_text(parts: list[str]) -> str:
    """The utility gate and every table's risk levels (``TableSpec.thresholds``), one line."""
    head = (f"Utility gate: federation MAE ≤ {UTILITY_GATE}× the constant predictor's on every "
            "center.")
    return (head + (" Risk levels: " + "; ".join(parts) + "." if parts else "")
            + f" A line that claims significance is corrected for the page's number of such "
            f"claims (Holm, family-wise α = {ALPHA}); one that loses it reads inconclusive.")


def _cell(text: str) -> str:
    """One summary-table cell: a phrase on one line (a list-table cell is one RST paragraph);
    an empty one reads as a dash."""
    return " ".join(str(text).split()) or "—"


def by_severity(findings: Sequence[Finding]) -> list[Finding]:
    """``findings`` most severe first (:data:`~fedaudit.report.levels.SEVERITY`), in their
    given order within a level."""
    return sorted(findings, key=lambda f: SEVERITY.index(f.level))


def summary_lines(findings: Sequence[Finding]) -> list[str]:
    """The front page's one-screen verdict: a count of the levels, then one row per finding,
    most severe first -- the threat, who attacks, the level, the number it rests on, the
    control that licenses it and what to do -- as an RST list-table; then each level's rule,
    once."""
    ordered = by_severity(findings)
    counts = [(lv, sum(f.level == lv for f in ordered)) for lv in SEVERITY]
    tally = ", ".join(f"{n} {lv.value}" for lv, n in counts if n)
    lines = [f"{len(ordered)} finding{'s' if len(ordered) != 1 else ''}: {tally}. Most severe "
             "first; each is explained under *Detail* below.", "",
             ".. list-table::", "   :header-rows: 1", "   :class: fedaudit-summary",
             "   :widths: 17 12 9 22 19 21", "",
             "   * - Threat", "     - Who attacks", "     - Level", "     - The number behind it",
             "     - Control that licenses it", "     - What to do"]
    for f in ordered:
        advice = f.advice or ADVICE[f.level]
        lines += [f"   * - {_cell(f.topic)}", f"     - {_cell(f.attacker)}",
                  f"     - **{f.level.value}**", f"     - {_cell(f.number)}",
                  f"     - {_cell(f.control)}", f"     - {_cell(advice)}"]
    lines += ["", "Levels: " + "; ".join(f"**{lv.value}**: {RULES[lv]}" for lv in Level
                                         if any(f.level == lv for f in ordered)) + ".", ""]
    return lines


def attackers_text(attackers: Sequence[tuple[str, str, Sequence[str]]]) -> list[str]:
    """Who attacks with what: per attacker's view (title, what it holds, the titles of the
    attacks run with it), one RST list item."""
    if not attackers:
        return []
    lines = ["The attackers audited, each with only what it holds:", ""]
    lines += [f"- **{title}** ({holds}): {'; '.join(attacks)}."
              for title, holds, attacks in attackers]
    return lines + [""]


def with_table(finding: Finding, attacker: str, advice: str) -> Finding:
    """``finding`` with who attacks and what to do from its table's plugin
    (:meth:`fedaudit.catalog.Catalog.attacker_of`, ``TableSpec.advice``), where it does not
    say them itself."""
    return replace(finding, attacker=finding.attacker or attacker,
                   advice=finding.advice or advice)


def one_seed(finding: Finding, seed: int) -> Finding:
    """``finding`` of an attack that reads the first training seed's federations only, while
    the study trains the headline ones on several seeds: its line says so."""
    return replace(finding, sentence=finding.sentence.rstrip()
                   + f" Read on one training seed ({seed}): the attack runs on the first "
                   "seed's federations only.")


# The family-wise error rate the front page's significance claims are held to (Holm).
ALPHA = 0.05


def holm_corrected(findings: list[Finding], alpha: float = ALPHA) -> list[Finding]:
    """The front page's significance claims corrected for their number: every finding with a
    p-value (:attr:`Finding.p_value`) is one test; Holm's step-down adjustment
    (:func:`fedaudit.report.seeds.holm`) keeps the family-wise error at ``alpha``. A high or
    moderate risk whose adjusted p exceeds ``alpha`` becomes inconclusive; every tested line
    states its adjusted p and the number of tests."""
    tested = [i for i, f in enumerate(findings) if np.isfinite(f.p_value)]
    if not tested:
        return list(findings)
    adjusted = holm([findings[i].p_value for i in tested])
    m = len(tested)
    tests = f"{m} test{'s' if m != 1 else ''}"
    out = list(findings)
    for i, adj in zip(tested, adjusted, strict=True):
        f = findings[i]
        p_text = "0 (the null gives no success)" if adj == 0 else f"{adj:.3g}"
        note = f" (Holm-adjusted p = {p_text} over the page's {tests}.)"
        if f.level in (Level.HIGH, Level.MODERATE) and adj > alpha:
            # its own advice, not the table's for an inconclusive line (a failed control)
            out[i] = replace(f, level=Level.INCONCLUSIVE, p_value=adj,
                             sentence=f"inconclusive after correction for the page's "
                                      f"{tests}: {f.sentence.rstrip()} Its adjusted p = "
                                      f"{p_text} exceeds {alpha} (Holm).",
                             advice=f"a {f.level.value} signal that does not survive the "
                                    f"correction for the page's {tests}: more patients or "
                                    "seeds decide it; do not read as safe")
        else:
            out[i] = replace(f, p_value=adj, sentence=f.sentence.rstrip() + note)
    return out


def front_page(intro_rst: str, findings: list[Finding], *, demo: bool,
               thresholds: list[str] = (),
               attackers: Sequence[tuple[str, str, Sequence[str]]] = ()) -> str:
    """The report's front page: the introduction's first paragraph (what was audited), the
    verdict -- its summary table (:func:`summary_lines`), then each finding in detail, most
    severe first -- then the rest of the introduction (how the audit works) with the attackers
    audited (:func:`attackers_text`)."""
    first, _, rest = intro_rst.strip().partition("\n\n")
    lines = [first, "", "Audit verdict", "-------------", ""]
    if any(f.topic == UTILITY_TOPIC and f.level == Level.NO_MODEL for f in findings):
        lines += ["**The federation did not learn the task** (see the utility gate below): read "
                  "every threat finding as a property of a broken model, not of the framework.",
                  ""]
    # the demo's caveat after the summary: the table is what the first screen must show
    caveat = (["These numbers come from the synthetic demo data and a CPU-sized federation: "
               "they show how the audit reads, not the security of a real deployment.", ""]
              if demo else [])
    if not findings:
        lines += caveat + ["- No attack or scenario results were produced by this "
                           "configuration."]
    else:
        lines += summary_lines(findings) + caveat + ["Detail", "~~~~~~", ""]
        lines += [f"- **{f.topic}** ({f.level.value}): {f.text}" for f in by_severity(findings)]
    lines += ["", thresholds_text(list(thresholds)), ""]
    if rest or attackers:
        lines += ["How the audit works", "-------------------", ""]
        lines += ([rest, ""] if rest else []) + attackers_text(attackers)
    return "\n".join(lines)
