"""Evasion across the attacked federations (paper 004 §VI): per scenario -- baseline (FedAvg),
FedMedian and every level of the noise defenses -- the headline attack's white-box ASR on the
attacker's own local model against the AASR over the other clients' local models, each beside
the random ±ε null, with the scenario's ε. Paper 004 found DP to lower the benign clients' ASR
more than the adversary's; the difference column shows whether that holds here.

It reads the evasion attack's summary (``rates.csv``, :mod:`fedaudit.attacks.evasion.report`
for its reading rules) and, for DP-SGD's per-client ε, the training histories.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fedaudit.attacks.evasion.metrics import aasr
from fedaudit.attacks.evasion.report import LOCAL_MODELS_NOTE, by_role, flags, fmt
from fedaudit.comparisons.evasion_dp.plugin import COMPARISON
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
from fedaudit.report.tables import DASH, Block, Table
from fedaudit.report.verdict import Finding

DEFENSE_TOPIC = "Evasion across the attacked federations (aggregation, update noise)"


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
    head = data[flags(data["headline"]) & (data["method"] != "random")]
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
            wb, gl = by_role(cell, "whitebox"), by_role(cell, "global")
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
                f"{fmt(r.get('whitebox_clean_mae'), 0)} / {fmt(r.get('global_clean_mae'), 0)}"
                f" / {fmt(r.get('victim_clean_mae'), 0)}"),
            "White-box ASR [95% CI]": (
                f"{r['whitebox_asr']:.2f} [{r['whitebox_ci_low']:.2f}–"
                f"{r['whitebox_ci_high']:.2f}]" if wb_ok and np.isfinite(r["whitebox_asr"])
                else "no usable model"),
            "Global ASR": fmt(r.get("global_asr")),
            "AASR (range)": (f"{r['aasr']:.2f} ({r['aasr_min']:.2f}–{r['aasr_max']:.2f})"
                             if np.isfinite(r.get("aasr", np.nan)) else DASH),
            "White-box − AASR": fmt(r.get("whitebox_asr", np.nan) - r.get("aasr", np.nan)),
            "Null (white-box / AASR)": (f"{fmt(r.get('whitebox_null_asr'))} / "
                                        f"{fmt(r.get('null_aasr'))}")})
    attack = frame["attack"].dropna().iloc[0] if "attack" in frame and \
        frame["attack"].notna().any() else DASH
    eps = frame["epsilon"].dropna().iloc[0] if "epsilon" in frame and \
        frame["epsilon"].notna().any() else np.nan
    notes = [f"The headline attack ({attack} at ε = {fmt(eps, 3)}) per attacked federation: "
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
                     f"{fmt(r.get('aasr', np.nan))} (clean MAE of the attacker's model "
                     f"{fmt(r.get('whitebox_clean_mae', np.nan), 0)} HU)")
    attack = frame["attack"].dropna().iloc[0] if frame["attack"].notna().any() else "?"
    return [Finding(DEFENSE_TOPIC, "info", f"{attack} ASR per federation: "
                    + "; ".join(parts) + ".")]


def build_defense_table(inputs: Any, params: Any) -> Table:
    scenarios = dict(params.scenarios)
    # DP-SGD's ε is per client, from the (q, steps) in each client's own record
    histories = {s: pd.read_csv(h, sep="\t") for s, h in
                 zip(scenarios, inputs.histories, strict=True)
                 if needs_history(scenarios[s].get("defenses", ()))}
    rates = pd.read_csv(inputs.rates)
    COMPARISON.check_inputs({"rates": rates}, {"rates": str(inputs.rates)})
    return defense_table(defense_rows(rates, scenarios, dict(params.rounds), histories,
                                      tuple(params.plugins)))


def defense_findings(data: pd.DataFrame, settings: dict[str, Any]) -> list[Finding]:
    return defense_finding(data)
