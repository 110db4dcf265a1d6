"""The privacy-utility comparison of the noise defenses (paper 003, Table III): per noise
level of every family, its ε with adjacency and unit, the server's noise replay, the sCT
federation's utility (MAE / SSIM beside the constant predictor), the slice classifier's
accuracy, FedMIA's AUC and each inversion method's success; one finding per family on how
attack success and utility move with the level.

It reads several attacks' summaries (the inversion suite's, FedMIA's, the noise replay's) and
the evaluation's, each through the columns :data:`COMPARISON.reads` declares
(``plugin.py``); the families' labels, symbols and ε come from the catalog
(:class:`fedaudit.catalog.NoiseFamily`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedaudit.attacks.gradinv.report import CONSTANT, METHODS, fmt, pooled_rows
from fedaudit.attacks.noise_replay.report import summarise as summarise_replay
from fedaudit.defenses.budgets import (
    NO_NOISE,
    budget_note,
    epsilon_text,
    level_symbol,
    model_label,
    needs_history,
    noise_family,
    noise_label,
    noise_level,
    noise_rank,
    scenario_budget,
)
from fedaudit.defenses.noise_source import SIMULATION_NOTE
from fedaudit.report.tables import DASH, Block, Table
from fedaudit.report.verdict import Finding


def privacy_utility(gradinv: pd.DataFrame, quality: pd.DataFrame, classifier: pd.DataFrame,
                    fedmia: pd.DataFrame | None, scenarios: dict[str, dict[str, Any]],
                    rounds: dict[str, int], classifier_rounds: int,
                    histories: dict[str, pd.DataFrame] | None = None,
                    classifier_histories: dict[str, pd.DataFrame] | None = None,
                    plugins: Sequence[str] = (), slices_per_patient: int | None = None,
                    replay: pd.DataFrame | None = None,
                    audit: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per attacked scenario: its noise (defense, level, ε at δ over the sCT
    federation's rounds and over the classifier's), the utility (sCT MAE / SSIM pooled over
    test patients, classifier test accuracy), FedMIA's pooled patient-level AUC, and per
    method × target the ASR and the mean SSIM over every attacked slice (batch 1).
    ``histories`` / ``classifier_histories`` (scenario -> training history) give DP-SGD's ε
    (:mod:`fedaudit.defenses.dp_sgd.budget`); other scenarios do not need them. ``plugins``: the
    study's plugin folders (a plugin defense may change the UNet, the ``model`` column).
    Every ε comes with its adjacency and unit (:func:`fedaudit.defenses.budgets.scenario_budget`:
    DP-FedAvg add/remove and replace-one hospital, DP-SGD per slice and the group bound over
    ``slices_per_patient``); ``replay``: the noise replay's per-client rows, whose outcome each
    noised scenario's row carries; ``audit``: the privacy audit's table (one row per audited
    scenario, :func:`fedaudit.attacks.privacy_audit.report.summarise`), whose measured ε (a
    lower bound on one round's) and status each audited scenario's row carries."""
    histories, classifier_histories = histories or {}, classifier_histories or {}
    replayed = (None if replay is None else
                summarise_replay(replay).set_index("scenario"))
    audited = None if audit is None else audit.set_index("scenario")
    rows = []
    for scenario, meta in scenarios.items():
        defenses = list(meta.get("defenses", ()))
        defense, level, entry = noise_level(defenses)
        budget = scenario_budget(defenses, rounds[scenario], histories.get(scenario),
                                 slices_per_patient)
        clf = scenario_budget(defenses, classifier_rounds, classifier_histories.get(scenario),
                              slices_per_patient)
        row: dict[str, Any] = {"scenario": scenario, "defense": defense or "none",
                               "model": model_label(defenses, plugins), "level": level,
                               **{k: (np.nan if v is None else v) for k, v in budget.items()},
                               **{f"{k}_classifier": (np.nan if v is None else v)
                                  for k, v in clf.items()
                                  if k.startswith(("epsilon", "delta_", "patient_"))},
                               "delta": float(entry["delta"]) if entry and "delta" in entry
                               else np.nan}
        if replayed is not None and defense is not None and scenario in replayed.index \
                and replayed.loc[scenario, "client_rounds"] > 0:
            r = replayed.loc[scenario]
            row.update(replay_recovered=int(r["recovered"]),
                       replay_client_rounds=int(r["client_rounds"]),
                       replay_removed=float(r["removed_median"]))
        if audited is not None and scenario in audited.index:
            a = audited.loc[scenario]
            row.update(epsilon_measured=float(a["epsilon_lower_bound"]),
                       epsilon_claimed_round=float(a["epsilon_claimed"]),
                       audit_status=str(a["status"]), audit_canaries=int(a["canaries"]),
                       audit_ceiling=float(a["ceiling"]))
        q = quality[(quality["scenario"] == scenario) & (quality["center"] != "center")]
        if len(q):
            # a federation whose model outputs NaN has NaN metrics: its utility is NaN, not
            # the 0 a NaN-skipping sum would give
            w = q["n"].astype(float)
            row["mae"] = float(np.average(q["mae_mean"].astype(float), weights=w))
            row["ssim_sct"] = float(np.average(q["ssim_mean"].astype(float), weights=w))
            row["test_patients"] = int(w.sum())
            # the trivial reference on the same centers' test patients: a federation at or
            # above it has no usable model, whatever its attack numbers say
            c = quality[(quality["scenario"] == CONSTANT) & quality["center"].isin(q["center"])]
            if len(c):
                row["mae_constant"] = float(np.average(c["mae_mean"].astype(float),
                                                       weights=c["n"].astype(float)))
        acc = classifier[(classifier["scenario"] == scenario) & (classifier["split"] == "test")
                         & (classifier["center"] == "all")]
        if len(acc):
            row["accuracy"] = float(acc["accuracy"].iloc[0])
            row["majority"] = float(acc["majority_class_accuracy"].iloc[0])
        if fedmia is not None:
            f = fedmia[(fedmia["scenario"] == scenario) & (fedmia["score"] == "fedmia")
                       & (fedmia["unit"] == "slice") & (fedmia["level"] == "patient")
                       & (fedmia["test"] == "membership") & (fedmia["target"] == "all")
                       & (fedmia["view"] == "update")]
            if len(f):
                row.update(fedmia_auc=float(f["auc"].iloc[0]),
                           fedmia_ci_low=float(f["ci_low"].iloc[0]),
                           fedmia_ci_high=float(f["ci_high"].iloc[0]))
        g = gradinv[(gradinv["scenario"] == scenario) & (gradinv["batch_size"] == 1)
                    & (gradinv["network"] != "control")]
        if (g["target"] == "unet").any():
            row["null_unet_ssim"] = float(g.loc[g["target"] == "unet", "null_ssim"].mean())
        for (target, method), sub in g.groupby(["target", "method"]):
            p = pooled_rows(sub)
            row[f"{target}_{method}_asr"] = p["asr"]
            row[f"{target}_{method}_ci_low"] = p["ci_low"]
            row[f"{target}_{method}_ssim"] = p["ssim_all"]
            row[f"{target}_{method}_n"] = p["attacked"]
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values(["defense", "level"], key=lambda s: s.map(noise_rank)
                           if s.name == "defense" else s, kind="stable").reset_index(drop=True)


def noise_reference(data: pd.DataFrame, levels: pd.DataFrame) -> pd.DataFrame:
    """The row (of a privacy-utility frame) that a noise defense's ``levels`` are read against:
    the federation without noise that trains the same UNet (DP-SGD's: ``groupnorm``), else the
    first one without noise (the baseline); empty when there is none."""
    none = data[data["defense"] == "none"]
    if "model" in data and len(levels) and (none["model"] == levels["model"].iloc[0]).any():
        none = none[none["model"] == levels["model"].iloc[0]]
    return none.head(1)


def _utility(row: pd.Series, key: str, digits: int) -> str:
    """A utility cell: the value, or "NaN (no usable model)" when the federation was trained
    and evaluated but its model outputs NaN."""
    v = row.get(key, np.nan)
    if np.isfinite(v):
        return f"{v:.{digits}f}"
    return "NaN (no usable model)" if row.get("test_patients", 0) > 0 else DASH


def _versus_constant(row: pd.Series) -> str:
    """The sCT MAE ÷ the constant predictor's on the same test patients, and whether the
    federation beat it (below 1: a usable model)."""
    mae, const = row.get("mae", np.nan), row.get("mae_constant", np.nan)
    if not (np.isfinite(mae) and np.isfinite(const)):
        return DASH
    ratio = mae / const
    return f"{ratio:.2f}" + ("" if ratio < 1 else " (not beaten: no usable model)")


def _measured(row: pd.Series) -> str:
    """The privacy audit's cell: the one-run lower bound on one round's ε beside the one round
    the accountant claims, and the status (a control without noise says so)."""
    bound = row.get("epsilon_measured", np.nan)
    if not np.isfinite(bound):
        return DASH
    claimed = row.get("epsilon_claimed_round", np.nan)
    text = f"{bound:.2f} of {int(row['audit_canaries'])} canaries' {row['audit_ceiling']:.2f}"
    if np.isfinite(claimed):
        return f"{text}; claimed {claimed:.3g}: {row['audit_status']}"
    return text + ("; no noise (control)" if row["defense"] == "none" else "; no claim")


def privacy_utility_table(data: pd.DataFrame) -> Table:
    deltas = sorted({f"{d:g}" for d in data.get("delta", pd.Series([])).dropna()})
    delta_text = " / ".join(deltas) if deltas else DASH
    methods = [m for m in METHODS if any(c.startswith(("unet_" + m + "_asr",
                                                        "classifier_" + m + "_asr"))
                                         for c in data.columns)]
    util, attack = [], []
    for _, r in data.iterrows():
        sim = bool(r.get("simulation", False)) and r["defense"] != "none"
        head = {"Defense": noise_label(r["defense"])
                + (f" ({SIMULATION_NOTE})" if sim else ""),
                "Level": DASH if r["defense"] == "none" else
                f"{level_symbol(r['defense'])} = {r['level']:g}",
                "UNet": r.get("model", "BatchNorm")}
        defense = None if r["defense"] == "none" else r["defense"]
        clf_budget = {k[:-len("_classifier")]: v for k, v in r.items()
                      if k.endswith("_classifier")}
        clf_budget.update(simulation=sim, slices_per_patient=r.get("slices_per_patient"))
        replay = DASH
        if np.isfinite(r.get("replay_client_rounds", np.nan)):
            n, k = int(r["replay_client_rounds"]), int(r["replay_recovered"])
            replay = (f"recovered {k}/{n} (the server removes the noise)" if k else
                      f"not recovered 0/{n}") + f", {r['replay_removed']:.2f} removed"
        util.append({**head,
                     f"ε (sCT) at δ = {delta_text}": epsilon_text(r, defense),
                     "ε measured (≥, 95 %, one round)": _measured(r),
                     f"ε (classifier) at δ = {delta_text}": epsilon_text(clf_budget, defense),
                     "Noise replay by the server": replay,
                     "sCT MAE (HU)": _utility(r, "mae", 1),
                     "MAE ÷ constant": _versus_constant(r),
                     "sCT SSIM": _utility(r, "ssim_sct", 3),
                     "Classifier acc.": (f"{r['accuracy']:.2f} (majority "
                                         f"{r['majority']:.2f})"
                                         if np.isfinite(r.get("accuracy", np.nan)) else DASH),
                     "FedMIA AUC [95% CI]": (
                         f"{r['fedmia_auc']:.2f} [{fmt(r['fedmia_ci_low'])}–"
                         f"{fmt(r['fedmia_ci_high'])}]"
                         if np.isfinite(r.get("fedmia_auc", np.nan)) else DASH)})
        row = dict(head)
        for m in methods:
            asr = r.get(f"classifier_{m}_asr", np.nan)
            row[f"{METHODS[m]} CNN ASR"] = fmt(asr) if np.isfinite(asr) else DASH
            row[f"{METHODS[m]} UNet SSIM"] = fmt(r.get(f"unet_{m}_ssim", np.nan), 3)
        attack.append(row)

    def delta_of(defense: str) -> str:
        d = data.loc[data["defense"] == defense, "delta"].dropna()
        return f"{d.iloc[0]:g}" if len(d) else "–"

    present = [d for d in dict.fromkeys(data["defense"]) if d != NO_NOISE]
    present.sort(key=noise_rank)
    families = {d: noise_family(d) for d in present}
    grid = " ".join(f.note.format(delta=delta_of(d)) for d, f in families.items()
                    if f.on_update and f.note)
    notes = ["One row per attacked federation: baseline, then each noise level of the update-"
             "noise grid." + (" " + grid if grid else ""),
             "ε measured: the one-run privacy audit's 95 % lower bound on one round's ε (its "
             "table: Privacy audit) out of the most its canaries can certify, beside the "
             "one-round ε the accountant claims (the whole run's composes the rounds); "
             "violated means the noise code or its accounting is wrong.",
             "Noise source: the clients draw their noise from the operating system's entropy "
             "(noise_source: os_entropy), which the server cannot regenerate; the noise replay "
             "column is the server's attempt (its table: Noise replay). A scenario with seeded "
             f"simulation noise says \"{SIMULATION_NOTE}\" in every cell: the server can "
             "subtract that noise, so its ε protects nothing."]
    notes += [f.note.format(delta=delta_of(d)) for d, f in families.items()
              if not f.on_update and f.note]
    const = data["mae_constant"].dropna() if "mae_constant" in data else pd.Series([])
    notes += [
        "Utility: sCT MAE / SSIM pooled over the test patients (the evaluation's "
        + (f"metrics, beside the constant predictor's {const.iloc[0]:.1f} HU on the same "
           "patients: a federation that does not beat it has no usable model, and its attack "
           "numbers say nothing about the defense; " if len(const) else "metrics; ")
        + "NaN when the trained model outputs NaN: noise on every exchanged array "
        "reaches BatchNorm's running variances, and once one turns negative the UNet's "
        "evaluation-mode output is NaN); the classifier (no BatchNorm) test accuracy with "
        "its majority-class reference. "
        "FedMIA: pooled patient-level AUC against same-center non-members (server view "
        "of each client's update).",
        "Attacks: the attacked client's shared gradient carries the scenario's noise "
        "(the same transform its clients apply to their updates; under DP-SGD one step "
        "on a lot of that slice: its gradient clipped to C plus N(0, (σC)²)). CNN ASR: "
        "share of "
        "attacked classifier slices reconstructed at SSIM ≥ 0.9; UNet SSIM: mean fitted "
        "SSIM over every attacked UNet slice (successes are rare there, so the mean shows "
        "the trend). A noise level's UNet SSIM is – where the method recovers no slice of "
        "the noise-free reference's UNet: noise on the gradient cannot make it recover more, "
        "so that attack is not run."]
    return Table("privacy_utility", "Noise defenses: privacy-utility trade-off", data,
                 [Block(pd.DataFrame(util), title="Utility and budget"),
                  Block(pd.DataFrame(attack), title="Attack success")], notes)


def defense_finding(data: pd.DataFrame) -> list[Finding]:
    """One line per noise defense: how attack success and utility move with its level."""
    out = []
    for defense, sub in data[data["defense"] != "none"].groupby("defense", sort=False):
        sub = sub.sort_values("level")
        base = noise_reference(data, sub)
        ref = str(base["scenario"].iloc[0]) if len(base) else "baseline"
        rows = pd.concat([base, sub])
        asr_cols = [c for c in data.columns if c.startswith("classifier_") and
                    c.endswith("_asr")]
        ssim_cols = [c for c in data.columns if c.startswith("unet_") and c.endswith("_ssim")]
        best_asr = rows[asr_cols].max(axis=1).to_numpy() if asr_cols else np.array([])
        unet_ssim = rows[ssim_cols].max(axis=1).to_numpy() if ssim_cols else np.array([])
        mono = bool(len(best_asr) > 1 and np.all(np.diff(best_asr) <= 1e-9))
        levels = ", ".join(f"{v:g}" for v in sub["level"])
        label = noise_label(defense)
        parts = []
        if len(best_asr):
            parts.append(f"the best method's classifier ASR goes "
                         f"{' → '.join(fmt(v) for v in best_asr)} from {ref} over levels "
                         f"{levels} ({'monotone' if mono else 'not monotone'})")
        if len(unet_ssim):
            null = rows["null_unet_ssim"].max() if "null_unet_ssim" in rows else np.nan
            skipped = len(unet_ssim) > 1 and not np.isfinite(unet_ssim[1:]).any()
            shown = unet_ssim[:1] if skipped else unet_ssim
            parts.append(f"the best UNet mean SSIM {' → '.join(fmt(v) for v in shown)}"
                         + (f" (a different slice of the same center scores {null:.2f})"
                            if np.isfinite(null) else "")
                         + (f" without noise (no method recovers a slice of {ref}'s UNet, so "
                            "the UNet is not attacked under noise)" if skipped else ""))
        if "mae" in rows:
            const = rows["mae_constant"].dropna() if "mae_constant" in rows else []
            parts.append("sCT MAE " + " → ".join(fmt(v, 0) if np.isfinite(v) else
                                                 "NaN (no usable model)"
                                                 for v in rows["mae"]) + " HU"
                         + (f" (constant predictor {const.iloc[0]:.0f} HU)" if len(const)
                            else ""))
        if "accuracy" in rows:
            parts.append(f"classifier accuracy {' → '.join(fmt(v) for v in rows['accuracy'])}")
        eps = sub["epsilon"].to_numpy(float)
        budget = (f"; ε {' → '.join(f'{e:.3g}' for e in eps)} at δ = "
                  f"{sub['delta'].iloc[0]:g}" if np.isfinite(eps).any()
                  else "; no DP guarantee (no clipping)")
        budget += budget_note(defense, sub, ref)
        if "simulation" in sub and sub["simulation"].astype(bool).any():
            budget += f" — {SIMULATION_NOTE}"
        if "replay_recovered" in sub and sub["replay_recovered"].notna().any():
            k = int(sub["replay_recovered"].fillna(0).sum())
            n = int(sub["replay_client_rounds"].fillna(0).sum())
            budget += (f"; the server's noise replay recovered {k}/{n} client-rounds"
                       + (" (it removes the noise)" if k else ""))
        if "audit_status" in sub and sub["audit_status"].notna().any():
            measured = sub[sub["audit_status"].notna()]
            budget += ("; measured in one run (95 % lower bound, one round): "
                       + ", ".join(f"ε ≥ {r['epsilon_measured']:.2f}"
                                   + (f" vs {r['epsilon_claimed_round']:.3g} claimed, "
                                      f"{r['audit_status']}"
                                      if np.isfinite(r["epsilon_claimed_round"]) else "")
                                   for _, r in measured.iterrows()))
        where = noise_family(defense).where
        out.append(Finding(f"Defense: {label} {where}", "info",
                           "; ".join(parts) + budget + "."))
    return out


def build_privacy_utility_table(inputs: Any, params: Any) -> Table:
    from fedaudit.catalog import catalog

    # an empty input when FedMIA is disabled
    fedmia = pd.read_csv(inputs.fedmia) if len(inputs.fedmia) else None
    paths = {k: str(getattr(inputs, k)) for k in ("gradinv", "quality", "classifier")}
    frames = {k: pd.read_csv(path) for k, path in paths.items()}
    replay = (pd.concat([pd.read_csv(f) for f in inputs.replay], ignore_index=True)
              if len(inputs.replay) else None)
    # an empty input when no scenario is audited
    audit = pd.read_csv(inputs.audit) if len(inputs.audit) else None
    catalog(params.plugins).comparisons["privacy_utility"].check_inputs(
        {**frames, "fedmia": fedmia, "replay": replay, "audit": audit},
        {**paths, "fedmia": str(inputs.fedmia), "replay": "the noise replay's tables",
         "audit": str(inputs.audit)})
    scenarios = dict(params.scenarios)
    # the DP-SGD scenarios' training histories: their ε is per client, from the steps reported
    dp = {s for s, meta in scenarios.items() if needs_history(meta.get("defenses", ()))}
    histories, classifier_histories = {}, {}
    for s, hist, folder in zip(scenarios, inputs.histories, inputs.classifiers, strict=True):
        if s in dp:
            histories[s] = pd.read_csv(hist, sep="\t")
            classifier_histories[s] = pd.read_csv(Path(folder) / "history.tsv", sep="\t")
    data = privacy_utility(frames["gradinv"], frames["quality"], frames["classifier"], fedmia,
                           scenarios, dict(params.rounds), int(params.classifier_rounds),
                           histories, classifier_histories, tuple(params.plugins),
                           int(params.slices_per_patient), replay, audit)
    return privacy_utility_table(data)


def defense_findings(data: pd.DataFrame, settings: dict[str, Any]) -> list[Finding]:
    return defense_finding(data)
