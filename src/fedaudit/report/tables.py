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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fedaudit.scenarios import Scenario, aggregation_label

DASH = "–"  # the paper's mark for "not applicable" (the poisoned center on its own test set)
YES, NO = "✓", "✗"


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


def need(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
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
    return aggregation_label(name)


def _summary_rows(summary: pd.DataFrame, scenario: str) -> pd.DataFrame:
    return summary[summary["scenario"] == scenario].set_index("center")


# -- Table 2 ---------------------------------------------------------------------------------

QUALITY_METRICS = (("mae", "MAE (HU)", 1), ("ssim", "SSIM", 2), ("psnr", "PSNR (dB)", 1))


CONSTANT_LABEL = "constant predictor"


def quality_table(summary: pd.DataFrame, *, plain: str = "baseline", secagg: str | None = "secagg",
                  external: Sequence[str] = (), constant: str | None = "constant",
                  seeds: Mapping[str, Sequence[tuple[int, str]]] | None = None) -> Table:
    """Paper 000 Table 2 from ``eval/summary.csv``: per evaluated center a row for the federation
    without SecAgg+ (``plain``), one with it (``secagg``, if it was run) and, as the reference a
    reader checks first, one for the ``constant`` predictor
    (:mod:`fedaudit.evaluation.reference`), with each federation's MAE divided by the
    constant's (below 1: the federation beats predicting one HU everywhere in the head).

    ``seeds``: per federation its training runs, (seed, scenario name), the study's seed first
    (config ``seeds``; None: one run). The rows show the first seed's mean ± sd over patients
    and, with several seeds, the range of the MAE over them; the data holds every seed's
    numbers (``seed``: the training seed, ``run``: the scenario trained with it, ``scenario``:
    the federation it repeats), which the verdict reads across seeds."""
    need(summary, ["scenario", "center", "n"] + [f"{m}_{s}" for m, _, _ in QUALITY_METRICS
                                                  for s in ("mean", "sd")], "eval summary")
    runs = [(plain, False)] + ([(secagg, True)] if secagg else [])
    for name in [n for n, _ in runs] + ([constant] if constant else []):
        if not (summary["scenario"] == name).any():
            raise TableError(f"eval summary has no rows for scenario {name!r}")
    centers = list(dict.fromkeys(summary[summary["scenario"] == plain]["center"]))
    ref = _summary_rows(summary, constant)["mae_mean"] if constant else pd.Series(dtype=float)
    runs_of = {name: [(s, r) for s, r in (seeds or {}).get(name, [(None, name)])
                      if (summary["scenario"] == r).any()] for name, _ in runs}
    several = any(len(v) > 1 for v in runs_of.values())
    data, rows = [], []
    for center in centers:
        lines = [(name, "federation", YES if sa else NO, sa) for name, sa in runs]
        if constant:
            lines.append((constant, CONSTANT_LABEL, DASH, None))
        for i, (name, model, mark, with_secagg) in enumerate(lines):
            trained = runs_of.get(name, [(None, name)])
            rec = _summary_rows(summary, trained[0][1]).loc[center]
            row = {"Center": center_label(center, external) if i == 0 else "", "Model": model,
                   "SecAgg+": mark}
            for m, label, digits in QUALITY_METRICS:
                row[label] = mean_sd(rec[f"{m}_mean"], rec[f"{m}_sd"], digits)
            for seed, run in trained:
                data += _quality_rows(_summary_rows(summary, run).loc[center], center, name,
                                      with_secagg, seed, run,
                                      float(ref[center]) if constant and name != constant
                                      and center in ref.index else None)
            if constant:
                ratio = (float(rec["mae_mean"]) / float(ref[center])
                         if name != constant and center in ref.index else np.nan)
                row["MAE ÷ constant"] = f"{ratio:.2f}" if np.isfinite(ratio) else DASH
            if several:
                maes = [float(_summary_rows(summary, r).loc[center, "mae_mean"])
                        for _, r in trained]
                row["MAE over seeds (HU)"] = (DASH if name == constant else
                                              f"{np.mean(maes):.1f} ({min(maes):.1f}–"
                                              f"{max(maes):.1f}; {len(maes)} seeds)")
            row["n"] = str(int(rec["n"]))
            rows.append(row)
    notes = ["Mean ± sd over each center's test patients (A-D test splits, all of the external "
             "center); n = patients. MAE, PSNR, SSIM as defined by SynthRAD2023."]
    if several:
        first = next(iter(runs_of.values()))[0][0]
        notes.append(f"Each federation trained once per seed on the same patients: the columns "
                     f"give seed {first}'s run, the last column the mean MAE over the seeds' "
                     "runs and their range (min–max).")
    if constant:
        notes.append("Constant predictor: the training patients' median in-mask HU everywhere "
                     "in the head, scored on the same patients; MAE ÷ constant below 1 means "
                     "the federation beats it.")
    return Table("quality", "Synthesis quality without and with SecAgg+ (paper 000 Table 2)",
                 pd.DataFrame(data), [Block(pd.DataFrame(rows))], notes)


def _quality_rows(rec: pd.Series, center: str, name: str, with_secagg: bool | None,
                  seed: int | None, run: str, constant_mae: float | None) -> list[dict]:
    """The tidy rows of one run (``run``, trained with ``seed``) of federation ``name`` on one
    center: each metric and, beside a constant predictor, MAE ÷ its MAE."""
    head = {"center": center, "scenario": name, "secagg": with_secagg}
    tail = {"n": int(rec["n"])} | ({} if seed is None else {"seed": seed, "run": run})
    out = [{**head, "metric": m, "mean": float(rec[f"{m}_mean"]), "sd": float(rec[f"{m}_sd"]),
            **tail} for m, _, _ in QUALITY_METRICS]
    if constant_mae is not None:
        out.append({**head, "metric": "mae_vs_constant",
                    "mean": float(rec["mae_mean"]) / constant_mae, "sd": np.nan, **tail})
    return out


# -- Table 3 ---------------------------------------------------------------------------------

GRID_COLUMNS = ("aggregation", "gamma", "poisoned", "evaluated", "scenario", "n", "mae", "mae_sd",
                "reference", "reference_mae", "reference_mae_sd", "p_value", "better")


def poisoning_grid(summary: pd.DataFrame, wilcoxon: pd.DataFrame,
                   scenarios: Mapping[str, Scenario], study_seed: int | None = None
                   ) -> pd.DataFrame:
    """Tidy Table 3: one row per poisoned scenario and evaluated center with its MAE, the MAE of
    its no-poisoning reference (same aggregation), the paired Wilcoxon p-value against it, and
    ``better`` = this aggregation has the lowest MAE of all aggregations run for the same
    (poisoned center, γ, evaluated center) and training seed; ties mark none.

    With replicas among ``scenarios`` (config ``seeds``) every row also names its training
    ``seed`` (``study_seed`` for the first run) and ``run`` (the scenario trained), and
    ``scenario`` the federation it repeats."""
    seeded = any(s.replica_of is not None for s in scenarios.values())
    need(summary, ["scenario", "center", "n", "mae_mean", "mae_sd"], "eval summary")
    need(wilcoxon, ["scenario", "center", "metric", "p_value"], "Wilcoxon table")
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
            if seeded:
                rows[-1].update(scenario=s.replica_of or s.name, run=s.name,
                                seed=s.seed if s.seed is not None else study_seed)
    columns = list(GRID_COLUMNS[:-1]) + (["run", "seed"] if seeded else [])
    grid = pd.DataFrame(rows, columns=columns)
    if grid.empty:
        grid["better"] = pd.Series(dtype=bool)
        return grid
    keys = ["gamma", "poisoned", "evaluated"] + (["seed"] if seeded else [])
    best = grid.groupby(keys)["mae"].transform("min")
    n_best = grid.assign(is_min=grid["mae"] == best).groupby(keys)["is_min"].transform("sum")
    n_aggs = grid.groupby(keys)["aggregation"].transform("nunique")
    grid["better"] = (grid["mae"] == best) & (n_best == 1) & (n_aggs > 1)
    return grid


def _noise(gamma: float) -> str:
    return f"{gamma * 100:g}%"


def _poisoning_over_seeds(grid: pd.DataFrame, evaluated: Sequence[str],
                          labels: Sequence[str]) -> Block:
    """The poisoned federations trained on several seeds: per evaluated center the MAE
    increase over the same seed's no-poisoning federation, mean and range over the seeds."""
    rows = []
    keys = grid[["aggregation", "poisoned", "gamma"]].drop_duplicates()
    for k in keys.itertuples():
        g = grid[(grid["aggregation"] == k.aggregation) & (grid["poisoned"] == k.poisoned)
                 & (grid["gamma"] == k.gamma)]
        if g["seed"].nunique() < 2:
            continue
        row = {"Aggregation": pretty_aggregation(k.aggregation), "Poisoned center": k.poisoned,
               "Noise": _noise(k.gamma)}
        for c, label in zip(evaluated, labels, strict=True):
            d = (g[g["evaluated"] == c]["mae"] - g[g["evaluated"] == c]["reference_mae"]).dropna()
            row[label] = (DASH if c == k.poisoned or len(d) < 2 else
                          f"{d.mean():+.1f} ({d.min():+.1f} to {d.max():+.1f}; {len(d)} seeds)")
        rows.append(row)
    return Block(pd.DataFrame(rows), "Across training seeds: MAE increase over the "
                                     "no-poisoning federation (HU), mean (range)")


def poisoning_table(grid: pd.DataFrame, summary: pd.DataFrame,
                    external: Sequence[str] = (), *, trimmed_is_median: bool = False) -> Table:
    """Paper 000 Table 3 from :func:`poisoning_grid`: per aggregation a block with rows
    poisoned center × noise level (γ high to low), columns the evaluated centers, the poisoned
    center's own column "–", and a last "No poisoning" row from the block's reference.
    ``trimmed_is_median``: the study's trimmed mean keeps only the middle value(s)
    (:func:`fedaudit.federation.aggregation.trims_to_median`), which a note then says."""
    if grid.empty:
        raise TableError("no poisoned scenario was run: the poisoning table is empty")
    data, seeds = grid, []
    if "seed" in grid.columns:  # several training seeds: the blocks show the study's seed
        seeds = list(dict.fromkeys(int(v) for v in grid["seed"]))
        grid = grid[grid["seed"] == seeds[0]]
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
    if len(seeds) > 1:
        blocks.append(_poisoning_over_seeds(data, evaluated, labels))
    notes = ["MAE (HU) mean ± sd over each evaluated center's test patients. Bold: the better "
             "aggregation for that poisoned center, noise level and evaluated center.",
             "p: two-sided paired Wilcoxon signed-rank test against the block's no-poisoning "
             "federation (shown only where a center has at least 2 test patients)."]
    if trimmed_is_median and "trimmed_mean" in set(grid["aggregation"]):
        notes.append("Trimmed mean: with this many clients and aggregations.trimmed_mean.beta "
                     "it trims all but the middle value(s), so it is exactly FedMedian here.")
    if len(seeds) > 1:
        notes.append(f"Each federation trained once per seed ({', '.join(map(str, seeds))}) on "
                     f"the same patients: the blocks show seed {seeds[0]}'s runs, the last block "
                     "the poisoned federations trained on every seed: the MAE increase over "
                     "the same seed's no-poisoning federation, mean over the seeds and range "
                     "(min–max); the CSV holds every seed's, which the verdict reads.")
    return Table("poisoning", "Data poisoning: MAE under FedAvg and FedMedian "
                 "(paper 000 Table 3)", data, blocks, notes)
