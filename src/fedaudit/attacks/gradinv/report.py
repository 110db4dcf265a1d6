"""The suite's tables and verdict findings: the inversion table (every method × target ×
center) and paper 003's Table II layout for the slice classifier (the privacy-utility table of
the noise defenses, which reads this suite's summary among others, is a comparison:
:mod:`fedaudit.comparisons.privacy_utility`).

Reading rules (DESIGN.md): every ASR stands beside its null (the same scoring of a *different*
slice of the same center) with an exact 95% interval over attacked slices; a verdict over k
methods rests on the lower bound of a Bonferroni-corrected interval (level 1 − 0.05/k) minus
the null's share, never on the best method's point estimate; a low UNet result is read only
where the BatchNorm-free control is recovered, and the classifier (where every method must
succeed) shows that the attack code works.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fedaudit.report.intervals import clopper_pearson
from fedaudit.report.levels import Level, beyond_null
from fedaudit.report.tables import DASH, Block, Table, TableError, need
from fedaudit.report.verdict import Finding

# the constant predictor's name in the evaluation summary (fedaudit.evaluation.run.CONSTANT)
CONSTANT = "constant"
METHODS = {"dlg": "DLG", "cpl": "CPL", "idlg": "iDLG", "inverting_gradients": "GradInv"}
NETWORKS = {"unet": "UNet", "control": "UNet without BatchNorm (control)",
            "classifier": "CNN classifier (32×32)"}
# the suite's verdict: lower bound of the (corrected) pooled UNet ASR minus the null's share
ASR_HIGH = 0.5
TOPIC = "Gradient inversion suite (CPL, DLG, iDLG, GradInv)"
KEYS = ["scenario", "target", "network", "method", "batch_size"]


def fmt(v: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if np.isfinite(v) else DASH


def _sci(v: float) -> str:
    return f"{v:.2e}" if np.isfinite(v) else DASH


def pooled_rows(rows: pd.DataFrame, level: float = 0.95) -> dict[str, float]:
    """One setting's attacked slices: counts, ASR with its exact interval at ``level``, the
    null's successes, the means over successes (paper 003 Table II) and over all slices."""
    ok = rows["success"].astype(bool)
    n, k = len(rows), int(ok.sum())
    lo, hi = clopper_pearson(k, n, level)
    succ = rows[ok]
    out = {"attacked": n, "successes": k, "asr": k / n if n else np.nan, "ci_low": lo,
           "ci_high": hi, "null_successes": int(rows["null_success"].astype(bool).sum()),
           "ssim_success": float(succ["ssim"].mean()) if k else np.nan,
           "mse_success": float(succ["mse"].mean()) if k else np.nan,
           "psnr_success": float(succ["psnr"].replace(np.inf, 100.0).mean()) if k else np.nan,
           "ssim_all": float(rows["ssim"].mean()), "null_ssim": float(rows["null_ssim"].mean()),
           "seconds_per_image": float(rows["seconds_per_image"].mean()),
           "evaluations": float(rows["evaluations"].mean())}
    if "label_correct" in rows and rows["label_correct"].notna().any():
        lab = rows["label_correct"].dropna().astype(bool)
        out["labels_correct"], out["labels_total"] = int(lab.sum()), len(lab)
    return out


def summarise(gradinv: pd.DataFrame) -> pd.DataFrame:
    """Per setting (scenario, target, network, method, batch) and center, plus ``all``."""
    need(gradinv, [*KEYS, "center", "success", "ssim", "mse", "psnr", "null_success",
                   "null_ssim", "seconds_per_image", "evaluations"], "gradient-inversion table")
    out = []
    for key, rows in gradinv.groupby(KEYS, sort=False):
        for center, sub in [*rows.groupby("center"), ("all", rows)]:
            out.append({**dict(zip(KEYS, key, strict=True)), "center": center,
                        **pooled_rows(sub)})
    return pd.DataFrame(out)


def _plain(gradinv: pd.DataFrame) -> str:
    """The scenario the inversion tables show: baseline, else the first one without noise."""
    noisy = set(gradinv.loc[gradinv["noise"].notna(), "scenario"]) if "noise" in gradinv \
        else set()
    names = list(dict.fromkeys(gradinv["scenario"]))
    plain = [s for s in names if s not in noisy]
    return "baseline" if "baseline" in plain else (plain or names)[0]


def suite_table(gradinv: pd.DataFrame) -> Table:
    """The inversion table of the unperturbed scenario: one row per network × method × batch,
    the per-center ASR, then pooled ASR [95% CI], null, SSIM / MSE of the successes, SSIM over
    all attacked slices, time and evaluations per image."""
    scenario = _plain(gradinv)
    data = summarise(gradinv[gradinv["scenario"] == scenario])
    centers = sorted(c for c in data["center"].unique() if c != "all")
    rows = []
    order = list(NETWORKS)
    data = data.sort_values(["network", "method", "batch_size"], key=lambda s: s.map(
        order.index) if s.name == "network" else s.map(list(METHODS).index)
        if s.name == "method" else s, kind="stable")
    for key, sub in data.groupby(["network", "method", "batch_size"], sort=False):
        net, method, b = key
        pooled = sub[sub["center"] == "all"].iloc[0]
        row = {"Network": NETWORKS.get(net, net),
               "Attack": METHODS.get(method, method) + ("" if b == 1 else f" (batch {b})")}
        if method == "idlg" and net != "classifier":
            row["Attack"] += " → joint DLG"
        for c in centers:
            r = sub[sub["center"] == c]
            row[c] = (f"{int(r['successes'].iloc[0])}/{int(r['attacked'].iloc[0])}"
                      if len(r) else DASH)
        row["ASR [95% CI]"] = (f"{pooled['asr']:.2f} [{pooled['ci_low']:.2f}–"
                               f"{pooled['ci_high']:.2f}]")
        row["Null"] = f"{int(pooled['null_successes'])}/{int(pooled['attacked'])}"
        row["SSIM (succ.)"] = fmt(pooled["ssim_success"], 3)
        row["MSE (succ.)"] = _sci(pooled["mse_success"])
        row["SSIM (all)"] = fmt(pooled["ssim_all"], 3)
        row["Null SSIM"] = fmt(pooled["null_ssim"], 3)
        row["Labels"] = (f"{int(pooled['labels_correct'])}/{int(pooled['labels_total'])}"
                         if np.isfinite(pooled.get("labels_total", np.nan)) else DASH)
        row["s / image"] = fmt(pooled["seconds_per_image"], 1)
        row["Evaluations"] = f"{pooled['evaluations']:,.0f}"
        rows.append(row)
    notes = [f"Scenario {scenario}. The honest-but-curious server holds the global model it "
             "sent and one client's gradient of one slice (batch 1) or of B slices; it is never "
             "given the MR. Each center's columns: slices reconstructed at SSIM ≥ 0.9 (after "
             "the least-squares gain/offset fit, inside the head mask on the UNet, over the "
             "whole 32×32 image on the classifier) out of those attacked; ASR pooled over "
             "centers with an exact (Clopper–Pearson) 95% interval over slices.",
             "Null: the same scoring of a different slice of the same center (what looking "
             "like this center's anatomy earns without any leak). SSIM / MSE (succ.): means "
             "over the successful attacks, as paper 003 Table II; SSIM (all): over every "
             "attacked slice.",
             "UNet: the audited global model of the attacked round (BatchNorm in train mode); "
             "the control is the same UNet without BatchNorm: a low UNet score is read only "
             "where the control is recovered. CNN classifier: paper 003's target, where the "
             "attacks must work (the positive control of the attack code). Labels: the "
             "classifier labels the attacker ends with that are correct (iDLG/CPL extract "
             "them from the gradient; DLG optimises a soft label; GradInv is given them "
             "above batch 1).",
             "iDLG → joint DLG: iDLG's label extraction needs cross-entropy on a last fully "
             "connected layer; the UNet regresses a CT with L1, so joint-target DLG (dummy MR "
             "and dummy CT) runs in its place. Every method gets the same budget of objective "
             "evaluations (double backpropagations) per attack and restart."]
    return Table("inversion_suite", "Gradient inversion suite (paper 003): attack success",
                 data, [Block(pd.DataFrame(rows))], notes)


def classifier_table(gradinv: pd.DataFrame, accuracy: pd.DataFrame) -> Table:
    """Paper 003 Table II's layout for the classifier of the unperturbed scenario: Dataset
    (center), Method, Model, ASR, SSIM, MSE (means over successes), Time per image."""
    clf = gradinv[(gradinv["target"] == "classifier") & (gradinv["batch_size"] == 1)]
    if clf.empty:
        raise TableError("no batch-1 classifier attack in the gradient-inversion table")
    scenario = _plain(clf)
    data = summarise(clf[clf["scenario"] == scenario])
    rows = []
    for center, sub in data.groupby("center", sort=True):
        for i, (_, r) in enumerate(sub.sort_values(
                "method", key=lambda s: s.map(list(METHODS).index)).iterrows()):
            rows.append({"Dataset": (f"center {center}" if center != "all" else "all centers")
                         if i == 0 else "",
                         "Method": METHODS.get(r["method"], r["method"]), "Model": "CNN",
                         "ASR": f"{r['asr']:.0%} ({int(r['successes'])}/{int(r['attacked'])})",
                         "SSIM": fmt(r["ssim_success"], 4), "MSE": _sci(r["mse_success"]),
                         "Time (s)": fmt(r["seconds_per_image"], 2)})
    notes = [f"Scenario {scenario}; each center's attacked slices are a seeded draw of its "
             "training slices (slice count in the ASR column). SSIM and MSE are means over the "
             "successful attacks only (paper 003's Table II), after the gain/offset fit, over "
             "the whole 32×32 image; time is per attacked image on this run's hardware."]
    if not accuracy.empty:
        acc = accuracy[(accuracy["scenario"] == scenario) & (accuracy["split"] == "test")
                       & (accuracy["center"] == "all")]
        if len(acc):
            a = acc.iloc[0]
            notes.append(f"The classifier (DLG's 4-layer sigmoid CNN, labels: the slice's "
                         f"anatomical level) reaches test accuracy {a['accuracy']:.2f} against "
                         f"{a['majority_class_accuracy']:.2f} for the majority class; the "
                         "attacked model is its global model of the attacked round.")
    return Table("inversion_classifier",
                 "Paper 003 Table II layout: gradient inversion of the slice classifier", data,
                 [Block(pd.DataFrame(rows))], notes)


# --------------------------------------------------------------------------- privacy-utility


# ------------------------------------------------------------------------------- findings


def suite_finding(data: pd.DataFrame) -> Finding:
    """``data``: the tidy frame of :func:`suite_table`."""
    all_ = data[(data["center"] == "all") & (data["batch_size"] == 1)]
    clf = all_[all_["network"] == "classifier"]
    unet = all_[all_["network"] == "unet"]
    ctl = all_[all_["network"] == "control"]
    if unet.empty:
        return Finding(TOPIC, "inconclusive", "no UNet attack was scored.")
    k = len(unet)
    best = None
    for _, r in unet.iterrows():
        lo, _ = clopper_pearson(int(r["successes"]), int(r["attacked"]), 1 - 0.05 / k)
        bound = lo - r["null_successes"] / r["attacked"]
        if best is None or bound > best[0]:
            best = (bound, r, lo)
    bound, r, lo = best
    level = beyond_null(bound, ASR_HIGH)
    n = int(r["attacked"])
    counts = (f"best UNet attack {METHODS.get(r['method'], r['method'])}: "
              f"{int(r['successes'])}/{n} slices at SSIM ≥ 0.9 (lower bound {lo:.2f} at "
              f"{1 - 0.05 / k:.4f} for {k} attacks, null {int(r['null_successes'])}/{n}; mean "
              f"SSIM {r['ssim_all']:.2f})")
    code = ""
    if len(clf):
        worst = clf["asr"].min()
        code = (f"; on the classifier the same code recovers {worst:.0%}–{clf['asr'].max():.0%}"
                " of slices per method" + (" (the attack code works)" if worst > 0 else
                                           " (some method recovers nothing: check its budget)"))
    control_ok = bool(len(ctl)) and bool((ctl["successes"] > 0).any())
    # the summary table's cells
    summary = {"number": f"{int(r['successes'])}/{n} slices (lower bound {lo:.2f}; null "
                         f"{int(r['null_successes'])}/{n})",
               "control": "BatchNorm-free UNet: " + (
                   f"{int(ctl['successes'].max())} slice(s) recovered" if control_ok
                   else "nothing recovered")}
    if level is None and not control_ok:
        return Finding(TOPIC, Level.INCONCLUSIVE,
                       f"inconclusive: {counts}, but no method recovers a slice of the UNet "
                       f"without BatchNorm either (best control mean SSIM "
                       f"{fmt(ctl['ssim_all'].max() if len(ctl) else np.nan)}), so this "
                       f"budget does not show that the UNet resists{code}.", **summary)
    if level is None:
        return Finding(TOPIC, Level.RESISTS,
                       f"resists at this budget: the slices that come back do not exceed the "
                       f"null's share at the corrected level: {counts}{code}.",
                       power=f"a method recovers {int(ctl['successes'].max())} slice(s) of the "
                             "UNet without BatchNorm at the same budget.", **summary)
    return Finding(TOPIC, level, f"{level.value} risk: {counts}{code}.", **summary)


def build_suite_table(inputs: Any, params: Any) -> Table:
    return suite_table(pd.read_csv(inputs.gradinv))


def build_classifier_table(inputs: Any, params: Any) -> Table:
    return classifier_table(pd.read_csv(inputs.gradinv), pd.read_csv(inputs.classifier))


def suite_findings(data: pd.DataFrame, settings: dict[str, Any]) -> list[Finding]:
    return [suite_finding(data)]


def thresholds(settings: dict[str, Any]) -> str:
    return (f"gradient inversion: lower bound of the UNet ASR (Bonferroni over methods) minus "
            f"the null's share ≥ {ASR_HIGH} high, above 0 moderate; at or below 0 it resists "
            "at this budget only where the BatchNorm-free UNet is recovered, else inconclusive")


def advice(level: str) -> str:
    """What a reader does about an inversion-suite finding (the front page's summary table)."""
    return {
        "high": "the server rebuilds training slices from one update: add update noise (DP) "
                "or larger batches; their price is in the privacy-utility table",
        "moderate": "slices leak from one update beyond the null: add update noise (DP) or "
                    "larger batches",
        "inconclusive": "no conclusion: no method recovers the BatchNorm-free control at this "
                        "budget; do not read as safe",
    }.get(str(level), "")
