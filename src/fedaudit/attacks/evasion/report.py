"""The evasion attack's tables and verdict findings (report environment: no torch).

- ``evasion``: paper 004 Table I's layout (attack × steps: clean quality, AASR, time), with the
  white-box and global-model ASR and the random-noise null beside it, per scenario; a second
  block for the targeted attack (bone toward soft tissue);
- ``evasion_transfer``: per attack at the primary setting, every model -- the attacker's own
  (white-box), the final global model, every other client's local model -- with clean and
  adversarial MAE, ASR and the transfer rate from the white-box successes.

The comparison across aggregation rules and noise defenses (``evasion_dp``) reads this attack's
summary from its own folder, :mod:`fedaudit.comparisons.evasion_dp`.

Reading rules (CONTRIBUTING "standards"): every ASR stands beside the null -- a random corner of
the same ε-ball scored the same way -- with an exact 95% interval over the attacked slices and
the slice and patient counts; the verdict rests on the lower bound of a Bonferroni-corrected
interval (over the Table I attacks) of the ASR on the final global model minus the null's share,
and is "inconclusive" when even the white-box model is not fooled at the largest ε (then the
attack, not the model, is what failed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fedaudit.attacks.evasion.metrics import aasr, pooled_lower_bound
from fedaudit.report.intervals import binomial_tail
from fedaudit.report.levels import Level, beyond_null
from fedaudit.report.tables import DASH, Block, Table, need
from fedaudit.report.verdict import Finding

TOPIC = "Test-time evasion by a malicious client (FGSM, BIM, PGD)"
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

def fmt(v: Any, digits: int = 2) -> str:
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


def flags(s: pd.Series) -> pd.Series:
    """A flag column as read back from CSV (bool, or the strings True/False)."""
    return s.astype(str).str.lower().isin(["true", "1", "1.0"])


def _main(data: pd.DataFrame) -> str:
    names = list(dict.fromkeys(data["scenario"]))
    return "baseline" if "baseline" in names else names[0]


def _table_rows(data: pd.DataFrame) -> pd.DataFrame:
    """Paper 004 Table I's attacks: the untargeted ones at the primary ε and α (FGSM and every
    iterative attack at every step count)."""
    sel = (flags(data["sweep_steps"]) & (data["goal"] == "untargeted")
           & (data["method"] != "random"))
    return data[sel]


def by_role(rows: pd.DataFrame, role: str) -> pd.Series | None:
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
        bad = models[~flags(models["usable"])]
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
            wb, gl = by_role(cell, "whitebox"), by_role(cell, "global")
            a = agg.loc[(scenario, setting)] if (scenario, setting) in agg.index else None
            vic = cell[cell["role"] == "victim"]
            nul = null[np.isclose(null["epsilon"], cell["epsilon"].iloc[0])]
            nul_wb = by_role(nul, "whitebox")
            rows.append({
                "Scenario": scenario if i == 0 else "",
                "Attack type": cell["label"].iloc[0],
                "Clean MAE, clients (HU)": fmt(vic["clean_mae"].mean(), 1) if len(vic)
                else fmt(wb["clean_mae"] if wb is not None else np.nan, 1),
                "White-box ASR [95% CI]": _asr(wb) if wb is not None else DASH,
                "Global ASR [95% CI]": _asr(gl) if gl is not None else DASH,
                "AASR (range)": (f"{a['aasr']:.2f} ({a['aasr_min']:.2f}–{a['aasr_max']:.2f})"
                                 if a is not None else DASH),
                "Null ASR (white-box / AASR)": (
                    f"{fmt(nul_wb['asr'] if nul_wb is not None else np.nan)} / "
                    f"{fmt(a['null_aasr'] if a is not None else np.nan)}"),
                "ΔMAE white-box (HU)": fmt(wb["delta_mae"] if wb is not None else np.nan, 1),
                "PSNR (dB)": fmt(cell["psnr"].iloc[0], 1),
                "Time (s / batch)": fmt(cell["seconds_per_batch"].iloc[0], 3)})
        tsub = _order(data[(data["scenario"] == scenario) & (data["goal"] == "targeted")])
        for i, (_, cell) in enumerate(tsub.groupby("setting", sort=False)):
            wb, gl = by_role(cell, "whitebox"), by_role(cell, "global")
            a = agg.loc[(scenario, cell["setting"].iloc[0])] \
                if (scenario, cell["setting"].iloc[0]) in agg.index else None
            targ.append({
                "Scenario": scenario if i == 0 else "",
                "Attack": cell["label"].iloc[0],
                "Slices": f"{int(cell['n_slices'].iloc[0])}",
                "Region sCT, white-box (HU)": (
                    f"{fmt(wb['clean_region_hu'], 0)} → {fmt(wb['adv_region_hu'], 0)}"
                    if wb is not None else DASH),
                "Shift to target: white-box / global (HU)": (
                    f"{fmt(wb['shift'] if wb is not None else np.nan, 0)} / "
                    f"{fmt(gl['shift'] if gl is not None else np.nan, 0)}"),
                "White-box ASR": _asr(wb) if wb is not None else DASH,
                "Global ASR": _asr(gl) if gl is not None else DASH,
                "AASR": fmt(a["aasr"]) if a is not None else DASH,
                "Null ASR (white-box)": fmt(wb["null_asr"] if wb is not None else np.nan),
                "Head ΔMAE white-box (HU)": fmt(wb["delta_mae"] if wb is not None else np.nan,
                                                 1)})
    first = data.iloc[0]
    patients = int(data["n_patients"].max())
    notes = [
        f"The malicious client is center {first['attacker']} (paper 004 §III: it holds its own "
        "data, the architecture, the global model of every round and its own local model). It "
        "perturbs its own test MR slices within an L∞ ball of radius ε = "
        f"{fmt(_table_rows(data)['epsilon'].max(), 3)} on the [0, 1] MR scale against its "
        "own last-round local model (white-box); the same inputs are fed to the final global "
        "model and to every other client's last-round local model (victims). Attacks: FGSM "
        "(Goodfellow et al. 2015), BIM (Kurakin et al. 2017) and PGD with a random start "
        "(Madry et al. 2018) with step α = "
        f"{fmt(_table_rows(data).loc[_table_rows(data)['method'] != 'fgsm', 'alpha'].max(), 4)}"
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
    unusable = models[~flags(models["usable"])] if len(models) else models
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
    sel = _order(sub[(flags(sub["sweep_steps"]) | (sub["goal"] == "targeted"))
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
                "Clean MAE (HU)": fmt(r["clean_mae"], 1),
                "ΔMAE (HU)": fmt(r["delta_mae"], 1),
                **({"Shift to target (HU)": fmt(r["shift"], 0)} if goal == "targeted"
                   else {"Shift to target (HU)": DASH}),
                "ASR [95% CI]": _asr(r),
                "Transfer rate [95% CI]": (
                    DASH if r["role"] == "whitebox" or not np.isfinite(r["transfer_rate"])
                    else f"{r['transfer_rate']:.2f} [{r['transfer_ci_low']:.2f}–"
                         f"{r['transfer_ci_high']:.2f}] ({int(r['transfer_k'])}/"
                         f"{int(r['transfer_n'])})"),
                "Null ASR": fmt(r["null_asr"])})
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
    if glob.empty or not flags(glob["usable"]).any():
        return Finding(TOPIC, Level.NO_MODEL, f"{scenario}: the final global model gives no "
                       "usable sCT, so evasion cannot be measured on it.")
    sweep = sub[flags(sub["sweep_epsilon"]) & (sub["goal"] == "untargeted")
                & (sub["role"] == "whitebox")]
    top = sweep["epsilon"].max()
    at_top = sweep[np.isclose(sweep["epsilon"], top)]
    attacks_top = at_top[at_top["method"] != "random"]
    null_top = at_top[at_top["method"] == "random"]["asr"].max()
    control = (f"at the largest ε = {top:g} the best attack fools "
               f"{attacks_top['asr'].max():.0%} of slices on the attacker's own model "
               f"(random noise {null_top:.0%})")
    works = not attacks_top.empty and attacks_top["asr"].max() > (
        null_top if np.isfinite(null_top) else 0.0)
    # the summary table's control cell
    white_box = (f"white-box at ε = {top:g}: {attacks_top['asr'].max():.0%} fooled (random "
                 f"{null_top:.0%})")
    if not works:
        return Finding(TOPIC, "inconclusive",
                       f"inconclusive: {control}, so the attack does not even work white-box "
                       "at this budget and a low transfer says nothing about the models.",
                       control=white_box)
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
            f"{fmt(wb['asr'].iloc[0] if len(wb) else np.nan)}")
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
    summary = {"number": f"{int(best['successes'])}/{n} slices over +{threshold:g} HU at ε = "
                         f"{best['epsilon']:g} (lower bound {best['bound']:.2f}; random "
                         f"{best['null_asr']:.2f}; {p} patient{'s' if p != 1 else ''})",
               "control": white_box}
    if level is None:
        # the white-box attack works (checked above): the global model is the one that holds
        return Finding(TOPIC, Level.NOT_DETECTED, f"{text}.",
                       power=f"the same attacks work white-box: {control}.", **summary)
    null = float(best["null_asr"]) if np.isfinite(best["null_asr"]) else 0.0
    return Finding(TOPIC, level, f"{text}; {control}.",
                   p_value=min(1.0, k * binomial_tail(int(best["successes"]), n, null)),
                   **summary)


# ----------------------------------------------------------------------- catalog entry points


def build_attack_table(inputs: Any, params: Any) -> Table:
    return attack_table(pd.read_csv(inputs.rates), pd.read_csv(inputs.models),
                        float(params.threshold_hu), dict(params.targeted))


def build_transfer_table(inputs: Any, params: Any) -> Table:
    return transfer_table(pd.read_csv(inputs.rates), str(params.scenario))


def findings(data: pd.DataFrame, settings: dict[str, Any]) -> list[Finding]:
    return [evasion_finding(data, settings)]


def settings(config: dict[str, Any]) -> dict[str, Any]:
    return {"threshold_hu": float(config["attacks"]["evasion"]["threshold_hu"])}


def thresholds(settings: dict[str, Any]) -> str:
    return (f"evasion: lower bound of the final global model's ASR (slices whose MAE rises by "
            f"more than {settings.get('threshold_hu', float('nan')):g} HU; Bonferroni over the "
            f"Table I attacks) minus the random ±ε null's ASR ≥ {ASR_HIGH} high, above 0 "
            "moderate, else not detected; inconclusive when the white-box model itself is not "
            "fooled at the largest ε")


def advice(level: str) -> str:
    """What a reader does about an evasion finding (the front page's summary table)."""
    return {
        "high": "small MR changes corrupt the sCT: check input MR integrity before planning; "
                "the federation gives no robustness",
        "moderate": "some MR perturbations corrupt the sCT: check input MR integrity before "
                    "planning",
        "inconclusive": "no conclusion: the attack does not fool even its own model here",
    }.get(str(level), "")
