"""The evasion attack's tables and verdict findings (report environment: no torch).

- ``evasion``: paper 004 Table I's layout (attack × steps: clean quality, AASR, time), with the
  white-box and global-model ASR and the random-noise null beside it, per scenario; a second
  block for the targeted attack (bone toward soft tissue);
- ``evasion_transfer``: per attack at the primary setting, every model -- the attacker's own
  (white-box), the final global model, every other client's local model -- with clean and
  adversarial MAE, ASR and the transfer rate from the white-box successes;
- ``evasion_dp``: per scenario (baseline, FedMedian, the noise defenses), the headline attack's
  white-box ASR against the victims' AASR (paper 004 §VI: DP lowered the benign clients' ASR
  more than the adversary's).

Reading rules (CONTRIBUTING "standards"): every ASR stands beside the null -- a random corner of
the same ε-ball scored the same way -- with an exact 95% interval over the attacked slices and
the slice and patient counts; the verdict rests on the lower bound of a Bonferroni-corrected
interval (over the Table I attacks) of the ASR on the final global model minus the null's share,
and is "inconclusive" when even the white-box model is not fooled at the largest ε (then the
attack, not the model, is what failed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fedaudit.attacks.evasion.metrics import aasr, pooled_lower_bound
from fedaudit.defenses.budgets import (
    epsilon_text,
    level_symbol,
    model_label,
    needs_history,
    noise_label,
    noise_level,
    scenario_budget,
)
from fedaudit.defenses.noise_source import SIMULATION_NOTE
from fedaudit.report.levels import Level, beyond_null
from fedaudit.report.tables import DASH, Block, Table, need
from fedaudit.report.verdict import Finding

TOPIC = "Test-time evasion by a malicious client (FGSM, BIM, PGD)"
DEFENSE_TOPIC = "Evasion across the attacked federations (aggregation, update noise)"
# the verdict: lower bound of the global model's ASR (Bonferroni over the Table I attacks)
# minus the random-noise null's ASR
ASR_HIGH = 0.5
NEEDED = ["scenario", "attacker", "setting", "goal", "method", "label", "epsilon", "alpha",
          "steps", "sweep_epsilon", "sweep_steps", "headline", "model", "role", "usable",
          "n_slices", "n_patients", "successes", "asr", "ci_low", "ci_high", "null_asr",
          "clean_mae", "delta_mae", "transfer_rate", "psnr", "seconds_per_batch"]


# How the scored local models are obtained (evasion/local_models.py), said in both tables.
LOCAL_MODELS_NOTE = ("Local models of the last round are the global model the client received "
                     "plus the update it computed: read from the server log where it holds "
                     "the clients' own updates, recomputed by the client's own seeded training "
                     "where it holds only noised ones or their sum (update-noise defenses, "
                     "SecAgg+).")

def _fmt(v: Any, digits: int = 2) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return DASH
    return f"{v:.{digits}f}" if np.isfinite(v) else DASH


def _asr(r: pd.Series) -> str:
    if not bool(r["usable"]) or not np.isfinite(r["asr"]):
        return "no usable model"
    return (f"{r['asr']:.2f} [{r['ci_low']:.2f}–{r['ci_high']:.2f}] "
            f"({int(r['successes'])}/{int(r['n_slices'])})")


def _bool(s: pd.Series) -> pd.Series:
    """A flag column as read back from CSV (bool, or the strings True/False)."""
    return s.astype(str).str.lower().isin(["true", "1", "1.0"])


def _main(data: pd.DataFrame) -> str:
    names = list(dict.fromkeys(data["scenario"]))
    return "baseline" if "baseline" in names else names[0]


def _table_rows(data: pd.DataFrame) -> pd.DataFrame:
    """Paper 004 Table I's attacks: the untargeted ones at the primary ε and α (FGSM and every
    iterative attack at every step count)."""
    sel = (_bool(data["sweep_steps"]) & (data["goal"] == "untargeted")
           & (data["method"] != "random"))
    return data[sel]


def _by_role(rows: pd.DataFrame, role: str) -> pd.Series | None:
    sub = rows[rows["role"] == role]
    return None if sub.empty else sub.iloc[0]


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    rank = {"fgsm": 0, "bim": 1, "pgd": 2, "random": 3}
    return frame.sort_values(["method", "steps"], key=lambda s: s.map(rank)
                             if s.name == "method" else s, kind="stable")


def _empty(name: str, title: str, data: pd.DataFrame, models: pd.DataFrame | None) -> Table:
    """A table saying that nothing was crafted (every attacked federation's attacker model gave
    a non-finite sCT), rather than a failed report."""
    why = "no evasion result: nothing was crafted"
    if models is not None and len(models):
        bad = models[~_bool(models["usable"])]
        if len(bad):
            why += " (no usable model: " + ", ".join(f"{r['scenario']}: {r['model']}"
                                                     for _, r in bad.iterrows()) + ")"
    return Table(name, title, data, [Block(pd.DataFrame({"Result": [why]}))], [why + "."])


def attack_table(data: pd.DataFrame, models: pd.DataFrame, threshold_hu: float,
                 targeted: dict[str, Any]) -> Table:
    """Paper 004 Table I per scenario, then the targeted block (module docstring)."""
    if data.empty:
        return _empty("evasion", "Test-time evasion (paper 004 Table I layout)", data, models)
    need(data, NEEDED, "evasion rates")
    agg = aasr(data).set_index(["scenario", "setting"])
    rows, targ = [], []
    for scenario in dict.fromkeys(data["scenario"]):
        sub = _order(_table_rows(data[data["scenario"] == scenario]))
        null = data[(data["scenario"] == scenario) & (data["method"] == "random")
                    & (data["goal"] == "untargeted")]
        for i, (setting, cell) in enumerate(sub.groupby("setting", sort=False)):
            wb, gl = _by_role(cell, "whitebox"), _by_role(cell, "global")
            a = agg.loc[(scenario, setting)] if (scenario, setting) in agg.index else None
            vic = cell[cell["role"] == "victim"]
            nul = null[np.isclose(null["epsilon"], cell["epsilon"].iloc[0])]
            nul_wb = _by_role(nul, "whitebox")
            rows.append({
                "Scenario": scenario if i == 0 else "",
                "Attack type": cell["label"].iloc[0],
                "Clean MAE, clients (HU)": _fmt(vic["clean_mae"].mean(), 1) if len(vic)
                else _fmt(wb["clean_mae"] if wb is not None else np.nan, 1),
                "White-box ASR [95% CI]": _asr(wb) if wb is not None else DASH,
                "Global ASR [95% CI]": _asr(gl) if gl is not None else DASH,
                "AASR (range)": (f"{a['aasr']:.2f} ({a['aasr_min']:.2f}–{a['aasr_max']:.2f})"
                                 if a is not None else DASH),
                "Null ASR (white-box / AASR)": (
                    f"{_fmt(nul_wb['asr'] if nul_wb is not None else np.nan)} / "
                    f"{_fmt(a['null_aasr'] if a is not None else np.nan)}"),
                "ΔMAE white-box (HU)": _fmt(wb["delta_mae"] if wb is not None else np.nan, 1),
                "PSNR (dB)": _fmt(cell["psnr"].iloc[0], 1),
                "Time (s / batch)": _fmt(cell["seconds_per_batch"].iloc[0], 3)})
        tsub = _order(data[(data["scenario"] == scenario) & (data["goal"] == "targeted")])
        for i, (_, cell) in enumerate(tsub.groupby("setting", sort=False)):
            wb, gl = _by_role(cell, "whitebox"), _by_role(cell, "global")
            a = agg.loc[(scenario, cell["setting"].iloc[0])] \
                if (scenario, cell["setting"].iloc[0]) in agg.index else None
            targ.append({
                "Scenario": scenario if i == 0 else "",
                "Attack": cell["label"].iloc[0],
                "Slices": f"{int(cell['n_slices'].iloc[0])}",
                "Region sCT, white-box (HU)": (
                    f"{_fmt(wb['clean_region_hu'], 0)} → {_fmt(wb['adv_region_hu'], 0)}"
                    if wb is not None else DASH),
                "Shift to target: white-box / global (HU)": (
                    f"{_fmt(wb['shift'] if wb is not None else np.nan, 0)} / "
                    f"{_fmt(gl['shift'] if gl is not None else np.nan, 0)}"),
                "White-box ASR": _asr(wb) if wb is not None else DASH,
                "Global ASR": _asr(gl) if gl is not None else DASH,
                "AASR": _fmt(a["aasr"]) if a is not None else DASH,
                "Null ASR (white-box)": _fmt(wb["null_asr"] if wb is not None else np.nan),
                "Head ΔMAE white-box (HU)": _fmt(wb["delta_mae"] if wb is not None else np.nan,
                                                 1)})
    first = data.iloc[0]
    patients = int(data["n_patients"].max())
    notes = [
        f"The malicious client is center {first['attacker']} (paper 004 §III: it holds its own "
        "data, the architecture, the global model of every round and its own local model). It "
        "perturbs its own test MR slices within an L∞ ball of radius ε = "
        f"{_fmt(_table_rows(data)['epsilon'].max(), 3)} on the [0, 1] MR scale against its "
        "own last-round local model (white-box); the same inputs are fed to the final global "
        "model and to every other client's last-round local model (victims). Attacks: FGSM "
        "(Goodfellow et al. 2015), BIM (Kurakin et al. 2017) and PGD with a random start "
        "(Madry et al. 2018) with step α = "
        f"{_fmt(_table_rows(data).loc[_table_rows(data)['method'] != 'fgsm', 'alpha'].max(), 4)}"
        "; the number after BIM / PGD is the iteration count (paper 004 Table I: PGD-20, "
        "PGD-40).",
        f"ASR: share of attacked slices whose in-mask MAE grows by more than {threshold_hu:g} "
        "HU (paper 000: a ~30 HU rise is potentially non-negligible clinically), exact 95% "
        f"interval over slices ({int(data['n_slices'].max())} slices of {patients} test "
        f"patient{'s' if patients != 1 else ''}). AASR: mean ASR over the victim clients, "
        "their range in brackets (paper 004's average over clients). Null: random ±ε noise of "
        "the same budget, scored the same way; an attack is a finding only above it. Clean "
        "MAE: the victims' mean on the unperturbed slices (paper 004's clean accuracy). PSNR: "
        "of the perturbed MR against the clean one (imperceptibility). Time: crafting one "
        "batch on the white-box model on this run's hardware.",
        f"Targeted: on slices with at least {targeted['min_voxels']} voxels of CT > "
        f"{targeted['region_hu']:g} HU (bone), the attack pushes the sCT there toward "
        f"{targeted['target_hu']:g} HU (soft tissue); shift = how far the region's mean "
        "distance to that value falls; success when it falls by more than the threshold. The "
        "head's MAE beside it shows whether a MAE-based check would notice."]
    blocks = [Block(pd.DataFrame(rows), title="Untargeted (paper 004 Table I layout)")]
    if targ:
        blocks.append(Block(pd.DataFrame(targ), title="Targeted: bone toward soft tissue"))
    unusable = models[~_bool(models["usable"])] if len(models) else models
    if len(unusable):
        notes.append("No usable model (non-finite sCT on the clean slices, or a clean MAE not "
                     "below the constant predictor's on the same slices: its errors are not an "
                     "attack's doing): "
                     + ", ".join(f"{r['scenario']}: {r['model']}"
                                 for _, r in unusable.iterrows()) + ".")
    return Table("evasion", "Test-time evasion (paper 004 Table I layout)", data, blocks,
                 notes)


def transfer_table(data: pd.DataFrame, scenario: str) -> Table:
    """Every model at the primary setting of ``scenario``: what paper 004 calls transfer."""
    if data.empty or scenario not in set(data["scenario"]):
        return _empty("evasion_transfer", "Test-time evasion: transfer to the global model "
                      "and the other clients", data, None)
    need(data, NEEDED, "evasion rates")
    sub = data[data["scenario"] == scenario]
    sel = _order(sub[(_bool(sub["sweep_steps"]) | (sub["goal"] == "targeted"))
                     & (sub["method"] != "random")])
    role_rank = {"whitebox": 0, "global": 1, "victim": 2}
    rows = []
    for (goal, _), cell in sel.groupby(["goal", "setting"], sort=False):
        cell = cell.sort_values(["role", "model"], key=lambda s: s.map(role_rank)
                                if s.name == "role" else s, kind="stable")
        for i, (_, r) in enumerate(cell.iterrows()):
            who = {"whitebox": f"{r['model']} (attacker, white-box)",
                   "global": "final global model"}.get(r["role"], f"{r['model']} (victim)")
            rows.append({
                "Attack": f"{r['label']}{' (targeted)' if goal == 'targeted' else ''}"
                if i == 0 else "",
                "Model": who,
                "Clean MAE (HU)": _fmt(r["clean_mae"], 1),
                "ΔMAE (HU)": _fmt(r["delta_mae"], 1),
                **({"Shift to target (HU)": _fmt(r["shift"], 0)} if goal == "targeted"
                   else {"Shift to target (HU)": DASH}),
                "ASR [95% CI]": _asr(r),
                "Transfer rate [95% CI]": (
                    DASH if r["role"] == "whitebox" or not np.isfinite(r["transfer_rate"])
                    else f"{r['transfer_rate']:.2f} [{r['transfer_ci_low']:.2f}–"
                         f"{r['transfer_ci_high']:.2f}] ({int(r['transfer_k'])}/"
                         f"{int(r['transfer_n'])})"),
                "Null ASR": _fmt(r["null_asr"])})
    notes = [f"Scenario {scenario}, attacker center {sub['attacker'].iloc[0]}. Each attack's "
             "perturbed slices, crafted on the attacker's own local model, scored on every "
             "model: the attacker's (white-box), the final global model the federation deploys "
             "and every other client's last-round local model (grey-box: the attacker never "
             "saw them). Transfer rate: of the slices that fool the white-box model, the share "
             "that also fool this one (paper 004 Table II's error transfer rate), exact 95% "
             "interval over those slices.",
             LOCAL_MODELS_NOTE]
    return Table("evasion_transfer", "Test-time evasion: transfer to the global model and "
                 "the other clients", sub, [Block(pd.DataFrame(rows))], notes)


def _defense_label(meta: dict[str, Any]) -> tuple[str, str]:
    """The scenario's noise defense and its level; "none" without one (a monitor such as the
    weight audit does not change training, so it is not this table's defense)."""
    name, level, _ = noise_level(meta.get("defenses", ()))
    if name is None:
        return "none", DASH
    return noise_label(name), f"{level_symbol(name)} = {level:g}"


def defense_rows(data: pd.DataFrame, scenarios: dict[str, dict[str, Any]],
                 rounds: dict[str, int], histories: dict[str, pd.DataFrame] | None = None,
                 plugins: Sequence[str] = ()) -> pd.DataFrame:
    """Per attacked scenario, the headline attack: white-box ASR, global ASR, AASR, the nulls,
    clean MAE of each model kind and the scenario's noise defense with its ε where it has one
    (``histories``: scenario -> training history, which DP-SGD's ε is read from) and the UNet it
    trains (``plugins``: the study's plugin folders, whose defenses may change it)."""
    histories = histories or {}
    head = data[_bool(data["headline"]) & (data["method"] != "random")]
    agg = aasr(data).set_index(["scenario", "setting"])
    out = []
    for scenario, meta in scenarios.items():
        label, level = _defense_label(meta)
        budget = scenario_budget(meta.get("defenses", ()), rounds[scenario],
                                 histories.get(scenario))
        row: dict[str, Any] = {"scenario": scenario, "aggregation": meta.get("aggregation"),
                               "defense": label, "level": level,
                               "noise": noise_level(meta.get("defenses", ()))[0] or "none",
                               "model": model_label(meta.get("defenses", ()), plugins),
                               "epsilon_dp": budget["epsilon"],
                               "epsilon_replace": budget["epsilon_replace"],
                               "simulation": budget["simulation"]}
        cell = head[head["scenario"] == scenario]
        if len(cell):
            wb, gl = _by_role(cell, "whitebox"), _by_role(cell, "global")
            a = agg.loc[(scenario, cell["setting"].iloc[0])] \
                if (scenario, cell["setting"].iloc[0]) in agg.index else None
            row.update(attack=cell["label"].iloc[0], epsilon=float(cell["epsilon"].iloc[0]))
            for tag, r in (("whitebox", wb), ("global", gl)):
                if r is not None:
                    row.update({f"{tag}_asr": r["asr"], f"{tag}_ci_low": r["ci_low"],
                                f"{tag}_ci_high": r["ci_high"], f"{tag}_n": r["n_slices"],
                                f"{tag}_successes": r["successes"],
                                f"{tag}_null_asr": r["null_asr"],
                                f"{tag}_clean_mae": r["clean_mae"],
                                f"{tag}_usable": bool(r["usable"])})
            if a is not None:
                row.update(aasr=a["aasr"], aasr_min=a["aasr_min"], aasr_max=a["aasr_max"],
                           null_aasr=a["null_aasr"], victims=a["victims"],
                           victim_clean_mae=a["victim_clean_mae"],
                           transfer_rate=a["transfer_rate"])
        out.append(row)
    return pd.DataFrame(out)


def defense_table(frame: pd.DataFrame) -> Table:
    rows = []
    for _, r in frame.iterrows():
        wb_ok = bool(r.get("whitebox_usable", False))
        rows.append({
            "Scenario": r["scenario"], "Noise defense": r["defense"], "Level": r["level"],
            "UNet": r.get("model", "BatchNorm"),
            "ε (DP)": epsilon_text({"epsilon": r["epsilon_dp"],
                                    "epsilon_replace": r.get("epsilon_replace", np.nan),
                                    "simulation": bool(r.get("simulation", False))},
                                   None if r.get("noise", "none") == "none" else r["noise"]),
            "Clean MAE: white-box / global / victims (HU)": (
                f"{_fmt(r.get('whitebox_clean_mae'), 0)} / {_fmt(r.get('global_clean_mae'), 0)}"
                f" / {_fmt(r.get('victim_clean_mae'), 0)}"),
            "White-box ASR [95% CI]": (
                f"{r['whitebox_asr']:.2f} [{r['whitebox_ci_low']:.2f}–"
                f"{r['whitebox_ci_high']:.2f}]" if wb_ok and np.isfinite(r["whitebox_asr"])
                else "no usable model"),
            "Global ASR": _fmt(r.get("global_asr")),
            "AASR (range)": (f"{r['aasr']:.2f} ({r['aasr_min']:.2f}–{r['aasr_max']:.2f})"
                             if np.isfinite(r.get("aasr", np.nan)) else DASH),
            "White-box − AASR": _fmt(r.get("whitebox_asr", np.nan) - r.get("aasr", np.nan)),
            "Null (white-box / AASR)": (f"{_fmt(r.get('whitebox_null_asr'))} / "
                                        f"{_fmt(r.get('null_aasr'))}")})
    attack = frame["attack"].dropna().iloc[0] if "attack" in frame and \
        frame["attack"].notna().any() else DASH
    eps = frame["epsilon"].dropna().iloc[0] if "epsilon" in frame and \
        frame["epsilon"].notna().any() else np.nan
    notes = [f"The headline attack ({attack} at ε = {_fmt(eps, 3)}) per attacked federation: "
             "baseline (FedAvg), FedMedian and every level of the noise grid (Laplace noise on "
             "the update, without a guarantee; DP-FedAvg, user-level ε at δ from the RDP "
             "accountant over the rounds run; DP-SGD, slice-level ε, the largest over "
             "clients; its UNet is the GroupNorm one, so it is read against groupnorm, the "
             "same UNet without DP). White-box: the attacker's own local model; AASR: the other "
             "clients' local models. Paper 004 §VI found DP to lower the benign clients' ASR "
             "more than the adversary's: the difference column shows it here.",
             LOCAL_MODELS_NOTE]
    return Table("evasion_dp", "Test-time evasion across aggregation rules and noise "
                 "defenses", frame, [Block(pd.DataFrame(rows))], notes)


# ------------------------------------------------------------------------------- findings


def evasion_finding(data: pd.DataFrame, settings: dict[str, Any]) -> Finding:
    """The verdict line (module docstring) for the main scenario (baseline when attacked)."""
    if data.empty:
        return Finding(TOPIC, "inconclusive", "no evasion result was scored.")
    scenario = _main(data)
    sub = data[data["scenario"] == scenario]
    threshold = float(settings.get("threshold_hu", np.nan))
    rows = _table_rows(sub)
    glob = rows[rows["role"] == "global"]
    if glob.empty or not _bool(glob["usable"]).any():
        return Finding(TOPIC, Level.NO_MODEL, f"{scenario}: the final global model gives no "
                       "usable sCT, so evasion cannot be measured on it.")
    sweep = sub[_bool(sub["sweep_epsilon"]) & (sub["goal"] == "untargeted")
                & (sub["role"] == "whitebox")]
    top = sweep["epsilon"].max()
    at_top = sweep[np.isclose(sweep["epsilon"], top)]
    attacks_top = at_top[at_top["method"] != "random"]
    null_top = at_top[at_top["method"] == "random"]["asr"].max()
    control = (f"at the largest ε = {top:g} the best attack fools "
               f"{attacks_top['asr'].max():.0%} of slices on the attacker's own model "
               f"(random noise {null_top:.0%})")
    if attacks_top.empty or not attacks_top["asr"].max() > (null_top if np.isfinite(null_top)
                                                             else 0.0):
        return Finding(TOPIC, "inconclusive",
                       f"inconclusive: {control}, so the attack does not even work white-box "
                       "at this budget and a low transfer says nothing about the models.")
    k = int(glob["setting"].nunique())
    glob = glob.assign(bound=pooled_lower_bound(glob["successes"], glob["n_slices"], k))
    glob = glob.assign(margin=glob["bound"] - glob["null_asr"].fillna(0.0))
    best = glob.loc[glob["margin"].idxmax()]
    level = beyond_null(best["margin"], ASR_HIGH)
    agg = aasr(sub).set_index("setting")
    a = agg.loc[best["setting"]] if best["setting"] in agg.index else None
    wb = rows[(rows["setting"] == best["setting"]) & (rows["role"] == "whitebox")]
    n, p = int(best["n_slices"]), int(best["n_patients"])
    text = (f"{'not detected' if level is None else level.value + ' risk'}: center "
            f"{best['attacker']}'s {best['label']} perturbations at "
            f"ε = {best['epsilon']:g} (PSNR {best['psnr']:.1f} dB) raise the final global "
            f"model's in-mask MAE by more than {threshold:g} HU on {int(best['successes'])}/{n} "
            f"slices ({p} test patient{'s' if p != 1 else ''}; lower bound "
            f"{best['bound']:.2f} at level {1 - 0.05 / k:.3f} over {k} attacks, random ±ε "
            f"noise {best['null_asr']:.2f}); on the attacker's own model "
            f"{_fmt(wb['asr'].iloc[0] if len(wb) else np.nan)}")
    if a is not None and np.isfinite(a["aasr"]):
        text += (f", on the other clients' models AASR {a['aasr']:.2f} (transfer rate "
                 f"{a['transfer_rate']:.2f})")
    targ = sub[(sub["goal"] == "targeted") & (sub["role"] == "global")
               & (sub["method"] != "random")]
    if len(targ):
        t = targ.loc[targ["shift"].idxmax()]
        text += (f"; targeted, {t['label']} moves the global model's sCT in bone "
                 f"{t['shift']:.0f} HU toward soft tissue ({t['clean_region_hu']:.0f} → "
                 f"{t['adv_region_hu']:.0f} HU) while the head MAE changes by "
                 f"{t['delta_mae']:+.0f} HU")
    if level is None:
        # the white-box attack works (checked above): the global model is the one that holds
        return Finding(TOPIC, Level.NOT_DETECTED, f"{text}.",
                       power=f"the same attacks work white-box: {control}.")
    return Finding(TOPIC, level, f"{text}; {control}.")


def defense_finding(frame: pd.DataFrame) -> list[Finding]:
    """One information line: the headline attack's white-box ASR and AASR per scenario."""
    if frame.empty or "whitebox_asr" not in frame:
        return []
    parts = []
    for _, r in frame.iterrows():
        tag = r["scenario"] + (f" ({r['defense']} {r['level']})" if r["level"] != DASH else "")
        if bool(r.get("simulation", False)):
            tag += f" ({SIMULATION_NOTE})"
        if not bool(r.get("whitebox_usable", False)) or not np.isfinite(r["whitebox_asr"]):
            parts.append(f"{tag}: no usable model")
            continue
        parts.append(f"{tag}: white-box {r['whitebox_asr']:.2f}, AASR "
                     f"{_fmt(r.get('aasr', np.nan))} (clean MAE of the attacker's model "
                     f"{_fmt(r.get('whitebox_clean_mae', np.nan), 0)} HU)")
    attack = frame["attack"].dropna().iloc[0] if frame["attack"].notna().any() else "?"
    return [Finding(DEFENSE_TOPIC, "info", f"{attack} ASR per federation: "
                    + "; ".join(parts) + ".")]


# ----------------------------------------------------------------------- catalog entry points


def build_attack_table(inputs: Any, params: Any) -> Table:
    return attack_table(pd.read_csv(inputs.rates), pd.read_csv(inputs.models),
                        float(params.threshold_hu), dict(params.targeted))


def build_transfer_table(inputs: Any, params: Any) -> Table:
    return transfer_table(pd.read_csv(inputs.rates), str(params.scenario))


def build_defense_table(inputs: Any, params: Any) -> Table:
    scenarios = dict(params.scenarios)
    # DP-SGD's ε is per client, from the (q, steps) in each client's own record
    histories = {s: pd.read_csv(h, sep="\t") for s, h in
                 zip(scenarios, inputs.histories, strict=True)
                 if needs_history(scenarios[s].get("defenses", ()))}
    return defense_table(defense_rows(pd.read_csv(inputs.rates), scenarios,
                                      dict(params.rounds), histories, tuple(params.plugins)))


def findings(data: pd.DataFrame, settings: dict[str, Any]) -> list[Finding]:
    return [evasion_finding(data, settings)]


def defense_findings(data: pd.DataFrame, settings: dict[str, Any]) -> list[Finding]:
    return defense_finding(data)


def settings(config: dict[str, Any]) -> dict[str, Any]:
    return {"threshold_hu": float(config["attacks"]["evasion"]["threshold_hu"])}


def thresholds(settings: dict[str, Any]) -> str:
    return (f"evasion: lower bound of the final global model's ASR (slices whose MAE rises by "
            f"more than {settings.get('threshold_hu', float('nan')):g} HU; Bonferroni over the "
            f"Table I attacks) minus the random ±ε null's ASR ≥ {ASR_HIGH} high, above 0 "
            "moderate, else not detected; inconclusive when the white-box model itself is not "
            "fooled at the largest ε")
