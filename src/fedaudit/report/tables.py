"""The study's result tables, laid out as in paper 000 so real-data results sit beside the paper's.

Each builder takes the tidy CSVs the pipeline already writes (``results/eval/summary.csv``,
``wilcoxon.csv``, ``results/attacks/fedmia/fedmia.csv``, ``results/attacks/dlg/dlg.csv``) and
returns a :class:`Table`: the numbers it holds as a tidy frame (``data``, written as CSV) and the
paper's layout as string blocks (``blocks``, rendered to Markdown / LaTeX / HTML by
:mod:`fedaudit.report.render`).

- :func:`quality_table` -- paper 000 Table 2: MAE (HU), SSIM, PSNR (dB) as mean ± sd per center,
  without and with SecAgg+.
- :func:`poisoning_grid` / :func:`poisoning_table` -- paper 000 Table 3: MAE (HU) per poisoned
  center × noise level × evaluated center, one block per aggregation with its no-poisoning row,
  the better aggregation in bold per cell and the paired Wilcoxon p-value against that block's
  no-poisoning federation (the reference the evaluation stage pairs each scenario with).
- :func:`membership_table` -- paper 000 Fig. 3 as numbers, measured as membership: FedMIA
  patient-level AUC with a bootstrap CI against each center's own held-out patients, per server
  view (client updates, SecAgg+ masked vectors, SecAgg+ aggregate) and candidate unit, center
  inference apart, and the memorising positive control.
- :func:`inversion_table` -- paper 000 "Gradient Inversion": DLG SSIM / PSNR per center and
  optimiser, the BatchNorm-free positive control beside the UNet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fedaudit.attacks.membership_stats import MIN_PER_CLASS
from fedaudit.scenarios import AGGREGATION_LABELS, Scenario

DASH = "–"  # the paper's mark for "not applicable" (the poisoned center on its own test set)
YES, NO = "✓", "✗"
OPTIMIZERS = {"adam": "Adam", "lbfgs": "L-BFGS"}


@dataclass
class Block:
    """One titled block of a table: a frame of display strings and which cells are bold."""

    frame: pd.DataFrame
    title: str | None = None
    bold: pd.DataFrame | None = None

    def is_bold(self, row: int, col: int) -> bool:
        return bool(self.bold is not None and self.bold.iat[row, col])


@dataclass
class Table:
    name: str
    title: str
    data: pd.DataFrame
    blocks: list[Block]
    notes: list[str] = field(default_factory=list)


class TableError(ValueError):
    pass


def _need(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TableError(f"{what}: missing column(s) {', '.join(missing)} "
                         f"(has {', '.join(map(str, df.columns))})")


def mean_sd(mean: float, sd: float, digits: int) -> str:
    """``92.9 ± 2.8``; a single patient has no sd, so only the mean is shown."""
    if not np.isfinite(mean):
        return DASH
    if sd is None or not np.isfinite(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def p_text(p: float) -> str:
    if not np.isfinite(p):
        return ""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def center_label(center: str, external: Sequence[str]) -> str:
    return f"{center} (External)" if center in external else center


def pretty_aggregation(name: str) -> str:
    return AGGREGATION_LABELS.get(name, name)


def _summary_rows(summary: pd.DataFrame, scenario: str) -> pd.DataFrame:
    return summary[summary["scenario"] == scenario].set_index("center")


# -- Table 2 ---------------------------------------------------------------------------------

QUALITY_METRICS = (("mae", "MAE (HU)", 1), ("ssim", "SSIM", 2), ("psnr", "PSNR (dB)", 1))


CONSTANT_LABEL = "constant predictor"


def quality_table(summary: pd.DataFrame, *, plain: str = "baseline", secagg: str | None = "secagg",
                  external: Sequence[str] = (), constant: str | None = "constant") -> Table:
    """Paper 000 Table 2 from ``eval/summary.csv``: per evaluated center a row for the federation
    without SecAgg+ (``plain``), one with it (``secagg``, if it was run) and, as the reference a
    reader checks first, one for the ``constant`` predictor
    (:mod:`fedaudit.evaluation.reference`), with each federation's MAE divided by the
    constant's (below 1: the federation beats predicting one HU everywhere in the head)."""
    _need(summary, ["scenario", "center", "n"] + [f"{m}_{s}" for m, _, _ in QUALITY_METRICS
                                                  for s in ("mean", "sd")], "eval summary")
    runs = [(plain, False)] + ([(secagg, True)] if secagg else [])
    for name in [n for n, _ in runs] + ([constant] if constant else []):
        if not (summary["scenario"] == name).any():
            raise TableError(f"eval summary has no rows for scenario {name!r}")
    centers = list(dict.fromkeys(summary[summary["scenario"] == plain]["center"]))
    ref = _summary_rows(summary, constant)["mae_mean"] if constant else pd.Series(dtype=float)
    data, rows = [], []
    for center in centers:
        lines = [(name, "federation", YES if sa else NO, sa) for name, sa in runs]
        if constant:
            lines.append((constant, CONSTANT_LABEL, DASH, None))
        for i, (name, model, mark, with_secagg) in enumerate(lines):
            rec = _summary_rows(summary, name).loc[center]
            row = {"Center": center_label(center, external) if i == 0 else "", "Model": model,
                   "SecAgg+": mark}
            for m, label, digits in QUALITY_METRICS:
                row[label] = mean_sd(rec[f"{m}_mean"], rec[f"{m}_sd"], digits)
                data.append({"center": center, "scenario": name, "secagg": with_secagg,
                             "metric": m, "mean": float(rec[f"{m}_mean"]),
                             "sd": float(rec[f"{m}_sd"]), "n": int(rec["n"])})
            if constant:
                ratio = (float(rec["mae_mean"]) / float(ref[center])
                         if name != constant and center in ref.index else np.nan)
                row["MAE ÷ constant"] = f"{ratio:.2f}" if np.isfinite(ratio) else DASH
                if name != constant:
                    data.append({"center": center, "scenario": name, "secagg": with_secagg,
                                 "metric": "mae_vs_constant", "mean": ratio, "sd": np.nan,
                                 "n": int(rec["n"])})
            row["n"] = str(int(rec["n"]))
            rows.append(row)
    notes = ["Mean ± sd over each center's test patients (A-D test splits, all of the external "
             "center); n = patients. MAE, PSNR, SSIM as defined by SynthRAD2023."]
    if constant:
        notes.append("Constant predictor: the training patients' median in-mask HU everywhere "
                     "in the head, scored on the same patients; MAE ÷ constant below 1 means "
                     "the federation beats it.")
    return Table("quality", "Synthesis quality without and with SecAgg+ (paper 000 Table 2)",
                 pd.DataFrame(data), [Block(pd.DataFrame(rows))], notes)


# -- Table 3 ---------------------------------------------------------------------------------

GRID_COLUMNS = ("aggregation", "gamma", "poisoned", "evaluated", "scenario", "n", "mae", "mae_sd",
                "reference", "reference_mae", "reference_mae_sd", "p_value", "better")


def poisoning_grid(summary: pd.DataFrame, wilcoxon: pd.DataFrame,
                   scenarios: Mapping[str, Scenario]) -> pd.DataFrame:
    """Tidy Table 3: one row per poisoned scenario and evaluated center with its MAE, the MAE of
    its no-poisoning reference (same aggregation), the paired Wilcoxon p-value against it, and
    ``better`` = this aggregation has the lowest MAE of all aggregations run for the same
    (poisoned center, γ, evaluated center); ties mark none."""
    _need(summary, ["scenario", "center", "n", "mae_mean", "mae_sd"], "eval summary")
    _need(wilcoxon, ["scenario", "center", "metric", "p_value"], "Wilcoxon table")
    mae_p = wilcoxon[wilcoxon["metric"] == "mae"].set_index(["scenario", "center"])["p_value"]
    rows = []
    for s in scenarios.values():
        if s.poison_center is None:
            continue
        mine = _summary_rows(summary, s.name)
        if mine.empty:
            raise TableError(f"eval summary has no rows for scenario {s.name!r}")
        ref = _summary_rows(summary, s.reference) if s.reference else pd.DataFrame()
        for center, rec in mine.iterrows():
            has_ref = center in ref.index
            rows.append({
                "aggregation": s.aggregation, "gamma": s.gamma, "poisoned": s.poison_center,
                "evaluated": center, "scenario": s.name, "n": int(rec["n"]),
                "mae": float(rec["mae_mean"]), "mae_sd": float(rec["mae_sd"]),
                "reference": s.reference or "",
                "reference_mae": float(ref.loc[center, "mae_mean"]) if has_ref else np.nan,
                "reference_mae_sd": float(ref.loc[center, "mae_sd"]) if has_ref else np.nan,
                "p_value": float(mae_p.get((s.name, center), np.nan)),
            })
    grid = pd.DataFrame(rows, columns=list(GRID_COLUMNS[:-1]))
    if grid.empty:
        grid["better"] = pd.Series(dtype=bool)
        return grid
    keys = ["gamma", "poisoned", "evaluated"]
    best = grid.groupby(keys)["mae"].transform("min")
    n_best = grid.assign(is_min=grid["mae"] == best).groupby(keys)["is_min"].transform("sum")
    n_aggs = grid.groupby(keys)["aggregation"].transform("nunique")
    grid["better"] = (grid["mae"] == best) & (n_best == 1) & (n_aggs > 1)
    return grid


def _noise(gamma: float) -> str:
    return f"{gamma * 100:g}%"


def poisoning_table(grid: pd.DataFrame, summary: pd.DataFrame,
                    external: Sequence[str] = (), *, trimmed_is_median: bool = False) -> Table:
    """Paper 000 Table 3 from :func:`poisoning_grid`: per aggregation a block with rows
    poisoned center × noise level (γ high to low), columns the evaluated centers, the poisoned
    center's own column "–", and a last "No poisoning" row from the block's reference.
    ``trimmed_is_median``: the study's trimmed mean keeps only the middle value(s)
    (:func:`fedaudit.federation.aggregation.trims_to_median`), which a note then says."""
    if grid.empty:
        raise TableError("no poisoned scenario was run: the poisoning table is empty")
    evaluated = sorted(grid["evaluated"].unique(), key=lambda c: (c in external, c))
    labels = [center_label(c, external) for c in evaluated]
    blocks = []
    for agg in dict.fromkeys(grid["aggregation"]):
        g = grid[grid["aggregation"] == agg]
        rows, bold = [], []
        for poisoned in sorted(g["poisoned"].unique()):
            for i, gamma in enumerate(sorted(g[g["poisoned"] == poisoned]["gamma"].unique(),
                                             reverse=True)):
                cells = g[(g["poisoned"] == poisoned) & (g["gamma"] == gamma)] \
                    .set_index("evaluated")
                row = {"Poisoned center": poisoned if i == 0 else "", "Noise": _noise(gamma)}
                brow = [False, False]
                for c, label in zip(evaluated, labels, strict=True):
                    if c == poisoned or c not in cells.index:
                        row[label], b = DASH, False
                    else:
                        r = cells.loc[c]
                        p = p_text(r["p_value"])
                        row[label] = mean_sd(r["mae"], r["mae_sd"], 1) + (f" ({p})" if p else "")
                        b = bool(r["better"])
                    brow.append(b)
                rows.append(row)
                bold.append(brow)
        refs = [r for r in dict.fromkeys(g["reference"]) if r]
        if refs:
            ref = _summary_rows(summary, refs[0])
            row = {"Poisoned center": "No poisoning", "Noise": DASH}
            for c, label in zip(evaluated, labels, strict=True):
                row[label] = mean_sd(ref.loc[c, "mae_mean"], ref.loc[c, "mae_sd"], 1) \
                    if c in ref.index else DASH
            rows.append(row)
            bold.append([False] * (2 + len(evaluated)))
        frame = pd.DataFrame(rows)
        blocks.append(Block(frame, f"{pretty_aggregation(agg)}: evaluated centers, MAE (HU)"
                                   + (f"; no poisoning = {refs[0]}" if refs else ""),
                            pd.DataFrame(bold, columns=frame.columns)))
    notes = ["MAE (HU) mean ± sd over each evaluated center's test patients. Bold: the better "
             "aggregation for that poisoned center, noise level and evaluated center.",
             "p: two-sided paired Wilcoxon signed-rank test against the block's no-poisoning "
             "federation (shown only where a center has at least 2 test patients)."]
    if trimmed_is_median and "trimmed_mean" in set(grid["aggregation"]):
        notes.append("Trimmed mean: with this many clients and train.trim_beta it trims all but "
                     "the middle value(s), so it is exactly FedMedian here.")
    return Table("poisoning", "Data poisoning: MAE under FedAvg and FedMedian "
                 "(paper 000 Table 3)", grid, blocks, notes)


# -- membership inference --------------------------------------------------------------------

# How each server view is named in the table: what it holds and which score reads it.
VIEW_LABELS = {"update": "client updates (FedMIA)",
               "masked": "SecAgg+ masked vectors (FedMIA, per client)",
               "aggregate": "SecAgg+ aggregate (cosine, membership in the federation)"}
PRIMARY_SCORE = {"update": "fedmia", "masked": "fedmia", "aggregate": "cosine"}
UNIT_LABELS = {"slice": "slices", "batch": "batches"}
MEMBERSHIP_COLUMNS = ["scenario", "control", "secagg", "view", "score", "unit", "level", "test",
                      "target", "auc", "ci_low", "ci_high", "p_value", "n_member_patients",
                      "n_nonmember_patients"]


def auc_ci(auc: float, lo: float, hi: float) -> str:
    if not np.isfinite(auc):
        return DASH
    ci = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else " [n too small]"
    return f"{auc:.2f}{ci}"


def membership_table(fedmia: pd.DataFrame) -> Table:
    """FedMIA per scenario, server view and target center (paper 000 Fig. 3 as numbers, measured
    as membership): patient-level AUC with a 95 % patient-bootstrap CI against the target's own
    held-out patients, per candidate unit, the permutation p-value, and center inference (members
    vs the external center) apart. ``all`` pools the targets."""
    _need(fedmia, MEMBERSHIP_COLUMNS, "FedMIA table")
    t = fedmia[[PRIMARY_SCORE.get(v) == s for v, s in zip(fedmia["view"], fedmia["score"],
                                                           strict=True)]]
    t = t[t["level"] == "patient"]
    if t.empty:
        raise TableError("FedMIA table has no patient-level rows")
    units = [u for u in UNIT_LABELS if u in set(t["unit"])]
    order = {v: i for i, v in enumerate(VIEW_LABELS)}
    keys = (t[["scenario", "control", "view"]].drop_duplicates()
            .assign(o=lambda d: d["control"].astype(int) * 10 + d["view"].map(order))
            .sort_values(["o", "scenario"]))
    targets = sorted(set(t["target"]) - {"all"}) + ["all"]
    idx = t.set_index(["scenario", "view", "unit", "test", "target"])
    rows, last = [], None
    for rec in keys.itertuples():
        for target in targets:
            row = {"Scenario": (rec.scenario + (" (memorising control)" if rec.control else ""))
                   if (rec.scenario, rec.view) != last else "",
                   "Server view": VIEW_LABELS[rec.view] if (rec.scenario, rec.view) != last
                   else "",
                   "Target": "pooled" if target == "all" else target}
            last = (rec.scenario, rec.view)
            first = idx.loc[(rec.scenario, rec.view, units[0], "membership", target)]
            row["Patients (members / held-out)"] = (f"{int(first.n_member_patients)} / "
                                                    f"{int(first.n_nonmember_patients)}")
            for u in units:
                m = idx.loc[(rec.scenario, rec.view, u, "membership", target)]
                row[f"AUC, {UNIT_LABELS[u]} [95% CI]"] = auc_ci(m.auc, m.ci_low, m.ci_high)
                row[f"p, {UNIT_LABELS[u]}"] = f"{m.p_value:.2f}" if np.isfinite(m.p_value) \
                    else DASH
            c = idx.loc[(rec.scenario, rec.view, units[0], "center", target)]
            row[f"Center inference AUC, {UNIT_LABELS[units[0]]}"] = auc_ci(c.auc, c.ci_low,
                                                                            c.ci_high)
            rows.append(row)
    notes = ["Membership: members are the patients the target center trained on; non-members "
             "its own held-out patients (validation and test, and train-split patients a capped "
             "scenario left out): same scanner, so only membership separates them. AUC at "
             "patient level (a patient's score = mean over its candidate units), 95 % CI from "
             f"2,000 bootstrap resamples of patients (none with fewer than {MIN_PER_CLASS} "
             "patients in a class; at a perfect separation the interval collapses to the point, "
             "read p with it); p: one-sided permutation test of patient labels within each "
             "center. "
             "Pooled: every target's patients together. AUC 0.5 = chance.",
             "Center inference: members against the external center's patients; it also "
             "rewards telling scanners apart and is not a membership result.",
             "Under SecAgg+ the server receives each client's masked vector (FedMIA per client) "
             "and the unmasked aggregate (only the uncalibrated cosine applies: membership in "
             "the federation as a whole)."]
    data = t[t["target"].isin(targets)].reset_index(drop=True)
    return Table("membership", "Membership inference (FedMIA) against same-center non-members",
                 data, [Block(pd.DataFrame(rows))], notes)


# -- gradient inversion ----------------------------------------------------------------------

def inversion_table(dlg: pd.DataFrame) -> Table:
    """DLG per center and optimiser, one row per attacked network (the UNet, the same UNet
    without BatchNorm, the MLP code check; :func:`fedaudit.attacks.dlg.run_dlg`): SSIM and PSNR
    (dB) inside the head mask, raw and after the least-squares gain/offset fit
    (:func:`fedaudit.attacks.dlg.reconstruction_quality`), and the iterations run. One row per
    network rather than one column group per network keeps the table as narrow as paper 000's
    (Fig. 2 reports SSIM and PSNR per reconstruction) whatever the number of controls."""
    _need(dlg, ["scenario", "center", "optimizer", "network", "metric", "value"], "DLG table")
    # fedaudit.attacks.dlg.NETWORKS in table order, with their row labels
    networks = {"unet": "UNet", "control": "UNet without BatchNorm (control)",
                "code_check": "MLP (code check)"}
    scores = [f"{m}_{k}" for k in ("raw", "fit") for m in ("ssim", "psnr")]
    t = dlg[dlg["metric"].isin([*scores, "iterations"])].copy()
    t["value"] = pd.to_numeric(t["value"], errors="coerce")
    if not t["metric"].isin(scores).any():
        raise TableError(f"DLG table has no {'/'.join(scores)} rows")
    unknown = sorted(set(t["network"]) - set(networks))
    if unknown:
        raise TableError(f"DLG table has networks {unknown}; expected {list(networks)}")
    wide = t.pivot_table(index=["scenario", "center", "optimizer", "network"],
                         columns="metric", values="value", aggfunc="first")
    wide = wide.sort_index(key=lambda ix: ix.map(list(networks).index)
                           if ix.name == "network" else ix)
    multi = t["scenario"].nunique() > 1
    rows, data, last = [], [], (None, None, None)
    for (scenario, center, optimizer, net), rec in wide.iterrows():
        # a group's keys are written on its first row only
        row = {"Scenario": scenario if scenario != last[0] else ""} if multi else {}
        row.update({"Center": center if (scenario, center) != last[:2] else "",
                    "Optimizer": OPTIMIZERS.get(optimizer, optimizer)
                    if (scenario, center, optimizer) != last else "",
                    "Network": networks[net]})
        last = (scenario, center, optimizer)
        for kind in ("raw", "fit"):
            ssim = rec.get(f"ssim_{kind}", np.nan)
            psnr = rec.get(f"psnr_{kind}", np.nan)
            row[f"SSIM {kind}"] = f"{ssim:.2f}" if np.isfinite(ssim) else DASH
            row[f"PSNR {kind} (dB)"] = (f"{psnr:.1f}" if np.isfinite(psnr) else
                                        "∞" if psnr == math.inf else DASH)
            for metric, v in ((f"ssim_{kind}", ssim), (f"psnr_{kind}", psnr)):
                data.append({"scenario": scenario, "center": center, "optimizer": optimizer,
                             "network": net, "metric": metric, "value": float(v)})
        iters = rec.get("iterations", np.nan)
        row["Iterations"] = f"{int(iters):,}" if np.isfinite(iters) else DASH
        rows.append(row)
    notes = ["The attacker is given the global model the server sent, the client's shared "
             "gradient of one slice, the head mask and, under target: known, the client's CT "
             "slice; never the MR. SSIM (2-D, averaged over the head mask) and PSNR inside the "
             "mask of the reconstructed MR slice against the true one, unclipped: raw = the "
             "reconstruction as it is; fit = after the least-squares gain and offset inside the "
             "mask, because with BatchNorm in train mode and batch 1 the shared gradient is "
             "almost blind to the MR's scale. Every network is attacked on the same slice from "
             "the same initial dummy with the same settings.",
             "UNet: the audited global model (BatchNorm in train mode, as the client trains it); "
             "its score is what the attack recovers from a real client.",
             "UNet without BatchNorm (control): the same architecture at the same input size "
             "with the global model's convolution weights; only where it is recovered (fitted "
             "SSIM near 1, the verdict's gate) does a low UNet score show that the UNet resists "
             "rather than that the attack budget is too weak for this architecture.",
             "MLP (code check): a one-hidden-layer network whose input follows from its gradient "
             "in closed form; it must be recovered, which shows the attack code works, and it "
             "says nothing about the UNet."]
    return Table("inversion", "Gradient inversion (DLG): reconstruction quality",
                 pd.DataFrame(data), [Block(pd.DataFrame(rows))], notes)
