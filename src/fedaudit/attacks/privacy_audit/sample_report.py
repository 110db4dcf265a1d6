"""The privacy audit's sample-level rows (DP-SGD: canaries in one client's round,
:mod:`.sample_round`): one row per audited scenario, its table block and its verdict line.

Per scenario, each attacker's guesses on its own canaries (white-box: the gradient canaries
against the update the server receives; black-box: the slice canaries' loss before and after the
round), each bounded at half the confidence (Bonferroni; one attacker when there are no slice
canaries), the larger bound reported against the accountant's ε of the audited round. Two
references for power:

- the *sum-score attacker on the mechanism*: each included canary adds C to each step's sum
  with probability q (the round's reported rates and steps), every step adds N(0, σ²C²), and the
  score is the sum: the server's score under SGD, without the UNet, the data or Adam. Canaries
  that join no lot are invisible to every attacker, so at small q and few steps even this
  reference stays far below the ceiling;
- the *control*: the same round with noise multiplier 0 (the clip and the lots unchanged); its
  white-box bound must reach :data:`CONTROL_SHARE` of the sum-score attacker's without noise, or
  the audit shows nothing. Adam normalises every coordinate by its own gradient history, so
  without noise the data's tiny gradients move the excluded canaries' coordinates as much as a
  canary moves its own in the first steps; the control measures what is left.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from fedaudit.attacks.privacy_audit.canaries import CONSISTENT, VIOLATED, CanaryDesign
from fedaudit.attacks.privacy_audit.gaussian import estimated_epsilon
from fedaudit.attacks.privacy_audit.one_run import (
    Guesses,
    ceiling,
    epsilon_lower_bound,
    guess,
    p_value,
)
from fedaudit.attacks.privacy_audit.references import eps_cell as _eps
from fedaudit.attacks.privacy_audit.references import flagged_from
from fedaudit.defenses.noise_source import SIMULATION, SIMULATION_NOTE
from fedaudit.report.levels import Level
from fedaudit.report.tables import DASH, Block, need
from fedaudit.report.verdict import Finding
from fedaudit.runtime import derive_seed

NEEDED = ["scenario", "defense", "level", "noise_source", "center", "round", "clip",
          "norm_factor", "parameters", "delta", "run", "kind", "canary", "included", "joined",
          "score", "noise_multiplier", "epsilon_claimed", "events"]
# the attackers, by the canaries they score
ATTACKERS = {"gradient": "white-box", "slice": "black-box"}
CONTROL_SHARE = 0.8
SIMULATIONS = 5
INCONCLUSIVE = "inconclusive"
CONTROL_ADVICE = ("no conclusion about DP-SGD's code: the sample-level audit has no power at this "
                  "round's lots; audit a round with more local epochs or larger lots (the tests "
                  "flag noise off, a missing clip and a wrong sampling rate at 6-10 lots per "
                  "canary)")


def simulated_sum_bound(events: list[tuple[float, int]], noise_multiplier: float, m: int,
                        k_in: int, k_out: int, delta: float, confidence: float, seed: int
                        ) -> float:
    """The sum-score attacker on the mechanism (module docstring), guessed and bounded as the
    audit is: the median of :data:`SIMULATIONS` simulated rounds."""
    out = []
    for k in range(SIMULATIONS):
        rng = np.random.default_rng(derive_seed(seed, "privacy_audit", "sample_reference", k))
        included = rng.random(m) < 0.5
        score = np.zeros(m)
        for q, n in events:
            score += rng.binomial(int(n), float(q), size=m) * included
            score += noise_multiplier * math.sqrt(int(n)) * rng.standard_normal(m)
        g = guess(score, included, k_in, k_out)
        out.append(epsilon_lower_bound(g.m, g.r, g.v, delta, confidence))
    return float(np.median(out))


def _guessed(sub: pd.DataFrame, k_in: int, k_out: int
             ) -> tuple[Guesses, np.ndarray, np.ndarray]:
    scores = sub["score"].to_numpy(float)
    included = sub["included"].astype(bool).to_numpy()
    return guess(scores, included, k_in, k_out), scores, included


def summarise_sample(rows: pd.DataFrame, confidence: float = 0.95, seed: int = 0
                     ) -> pd.DataFrame:
    """One row per audited scenario (module docstring), with the client-level table's columns
    that the privacy-utility table and the verdict read."""
    need(rows, NEEDED, "sample-level privacy audit results")
    out = []
    for scenario, sub in rows.groupby("scenario", sort=False):
        first = sub.iloc[0]
        delta = float(first["delta"])
        kinds = [k for k in ATTACKERS if len(sub[(sub["run"] == "audited") & (sub["kind"] == k)])]
        per_attack = 1.0 - (1.0 - confidence) / len(kinds)
        audited = sub[sub["run"] == "audited"]
        claimed = float(audited["epsilon_claimed"].iloc[0])
        events = [tuple(e) for e in json.loads(audited["events"].iloc[0])]
        sigma = float(audited["noise_multiplier"].iloc[0])
        row: dict[str, Any] = {
            "scenario": scenario, "canary_level": "sample", "defense": first["defense"],
            "level": float(first["level"]), "noise_source": first["noise_source"],
            "center": first["center"], "round": int(first["round"]), "rounds": 1,
            "clip": float(first["clip"]), "norm_factor": float(first["norm_factor"]),
            "parameters": int(first["parameters"]), "steps": sum(int(n) for _, n in events),
            "sample_rate": max(float(q) for q, _ in events), "delta": delta,
            "epsilon_claimed": claimed, "epsilon_run": np.nan, "confidence": confidence,
            "mu": np.nan, "clients_checked": 0, "clients_without_noise": 0,
            "noise_energy_min": np.nan}
        best: tuple[float, str] | None = None
        p_claim, p_zero = [], []
        for kind in kinds:
            name = ATTACKERS[kind]
            mine = audited[audited["kind"] == kind]
            k_in, k_out = CanaryDesign(m=len(mine)).guesses()
            g, scores, included = _guessed(mine, k_in, k_out)
            bound = epsilon_lower_bound(g.m, g.r, g.v, delta, per_attack)
            ctl_sub = sub[(sub["run"] == "control") & (sub["kind"] == kind)]
            cg, _, _ = _guessed(ctl_sub, k_in, k_out)
            ctl_events = [tuple(e) for e in json.loads(ctl_sub["events"].iloc[0])]
            row.update({
                f"{kind}_canaries": g.m, f"{kind}_included": int(included.sum()),
                f"{kind}_guesses": g.r, f"{kind}_correct": g.v, f"{kind}_bound": bound,
                f"{kind}_ceiling": ceiling(g.m, g.r, delta, per_attack),
                f"{kind}_reference": simulated_sum_bound(events, sigma, g.m, k_in, k_out, delta,
                                                         per_attack, seed),
                f"{kind}_control_guesses": cg.r, f"{kind}_control_correct": cg.v,
                f"{kind}_control_bound": epsilon_lower_bound(cg.m, cg.r, cg.v, delta,
                                                             per_attack),
                f"{kind}_control_reference": simulated_sum_bound(
                    ctl_events, 0.0, cg.m, k_in, k_out, delta, per_attack, seed)})
            if math.isfinite(claimed):
                p_claim.append(p_value(g.m, g.r, g.v, claimed, delta))
            p_zero.append(p_value(g.m, g.r, g.v, 0.0, delta))
            if best is None or bound > best[0]:
                best = (bound, kind)
                row.update(attack=name, canaries=g.m, included=int(included.sum()),
                           guesses=g.r, correct=g.v, epsilon_lower_bound=bound,
                           epsilon_estimate=estimated_epsilon(scores, included, delta))
        assert best is not None
        kind = best[1]
        row.update(ceiling=row[f"{kind}_ceiling"], perfect_bound=row[f"{kind}_reference"],
                   p_claim=min(1.0, min(p_claim) * len(kinds)) if p_claim else np.nan,
                   p_zero=min(1.0, min(p_zero) * len(kinds)),
                   control_ok=bool(row["gradient_control_bound"]
                                   >= CONTROL_SHARE * row["gradient_control_reference"]))
        # a bound below the claim says nothing when the control could not pass it either
        row["status"] = (VIOLATED if row["epsilon_lower_bound"] > claimed
                         else CONSISTENT if row["control_ok"] else INCONCLUSIVE)
        mu_flag, eps_flag = flagged_from(
            claimed, CanaryDesign(m=row["gradient_canaries"], confidence=per_attack), seed, delta)
        row.update(detectable_mu=mu_flag, detectable_epsilon=eps_flag)
        out.append(row)
    return pd.DataFrame(out)


def _guesses(r: pd.Series, kind: str, run: str = "") -> str:
    if not math.isfinite(r.get(f"{kind}_canaries", np.nan)):
        return DASH
    pre = f"{kind}_{run}_" if run else f"{kind}_"
    return (f"{int(r[pre + 'correct'])}/{int(r[pre + 'guesses'])}, ε ≥ "
            f"{_eps(r[pre + 'bound'])}")


def sample_block(data: pd.DataFrame) -> Block:
    """The sample-level rows as the table shows them."""
    view = []
    for _, r in data.iterrows():
        noise = f"DP-SGD, σ = {r['level']:g}, C = {r['clip']:g}" + (
            f" ({SIMULATION_NOTE})" if r["noise_source"] == SIMULATION else "")
        view.append({
            "Scenario": r["scenario"], "Noise": noise,
            "Client, round": f"{r['center']}, round {int(r['round'])}: {int(r['steps'])} "
                             f"steps at q ≤ {r['sample_rate']:.3g}",
            "Canaries (in)": f"{int(r['gradient_canaries'])} gradient "
                             f"({int(r['gradient_included'])}), "
                             + (f"{int(r['slice_canaries'])} slice "
                                f"({int(r['slice_included'])})"
                                if math.isfinite(r.get("slice_canaries", np.nan))
                                else "no slice"),
            "White-box: right guesses": _guesses(r, "gradient"),
            "Black-box: right guesses": _guesses(r, "slice"),
            "ε ≥ (95 %)": _eps(r["epsilon_lower_bound"]),
            "Claimed ε (this round, one slice)": f"{r['epsilon_claimed']:.3g} at "
                                                 f"δ = {r['delta']:g}",
            "Sum-score attacker on the mechanism": _eps(r["perfect_bound"]),
            "Control σ = 0: white-box (reference); black-box": (
                f"{_guesses(r, 'gradient', 'control')} "
                f"({_eps(r['gradient_control_reference'])}); "
                f"{_guesses(r, 'slice', 'control')}"),
            "Flagged from": (f"μ ≥ {r['detectable_mu']:.3g} (ε ≥ "
                             f"{_eps(r['detectable_epsilon'])})"
                             if math.isfinite(r["detectable_mu"]) else
                             "the claim is above the ceiling: nothing can be flagged"),
            "Status": status_text(r)})
    return Block(pd.DataFrame(view), title=(
        "Sample level (DP-SGD): canaries in one client's round; white-box from the update the "
        "server receives, black-box from the model's loss"))


def status_text(r: pd.Series) -> str:
    if r["status"] == VIOLATED:
        return f"violated: the bound is above the claim (p = {r['p_claim']:.2g})"
    if not r["control_ok"]:
        return "inconclusive: the control without noise failed"
    return "consistent (not a proof: see the flagged leak)"


NOTES = [
    "Sample level: one client's round of the trained DP-SGD federation is re-run from the "
    "global model the server log holds (its data, settings, Opacus and noise source), with "
    "canaries that are samples of its epoch: each in with probability ½ by a draw from the "
    "operating system's entropy, each joining a lot at the rate the client's loader samples "
    "its own slices. Gradient canaries are one coordinate at 100 × C before Opacus' clip; "
    "slice canaries are MR and CT of uniform noise. The claim is the accountant's ε of that "
    "round (add/remove one slice).",
    "Sum-score attacker on the mechanism: the round's Poisson-subsampled Gaussian steps "
    "simulated without the UNet or Adam, scored by the sum (the score under SGD); canaries "
    "that join no lot are invisible to any attacker. The control re-runs the round at noise "
    "multiplier 0 and must reach 80 % of that attacker's bound without noise.",
]


def sample_findings(topic: str, rows: pd.DataFrame) -> Finding:
    """The verdict line of the DP-SGD rows (sample level)."""
    worst = rows.loc[rows["epsilon_lower_bound"].idxmax()]
    number = (f"ε ≥ {_eps(worst['epsilon_lower_bound'])} measured vs "
              f"{worst['epsilon_claimed']:.3g} claimed (one client's round)")
    control = "; ".join(
        f"{r['scenario']} without noise: white-box {_guesses(r, 'gradient', 'control')} "
        f"(the sum-score attacker {_eps(r['gradient_control_reference'])})"
        + (f", black-box {_guesses(r, 'slice', 'control')}"
           if math.isfinite(r.get("slice_canaries", np.nan)) else "")
        for _, r in rows.iterrows())
    parts = "; ".join(
        f"{r['scenario']} (client {r['center']}, round {int(r['round'])}): ε ≥ "
        f"{_eps(r['epsilon_lower_bound'])} measured ({r['attack']}, {int(r['correct'])}/"
        f"{int(r['guesses'])} right of {int(r['canaries'])} canaries), claimed "
        f"{r['epsilon_claimed']:.3g} for the round"
        + (f"; {SIMULATION_NOTE}" if r["noise_source"] == SIMULATION else "")
        for _, r in rows.iterrows())
    bad = rows[rows["status"] == VIOLATED]
    if len(bad):
        return Finding(topic, Level.HIGH,
                       "violated: DP-SGD leaks more than its accountant claims — " + parts
                       + ". The DP-SGD code or its accounting is wrong: every ε it reports "
                       "is void.", p_value=float(bad["p_claim"].min()), number=number,
                       control=control)
    if not rows["control_ok"].all():
        joins = "; ".join(f"{r['scenario']}: {int(r['steps'])} steps at q = "
                          f"{r['sample_rate']:.3g}, of which a canary joins "
                          f"{r['steps'] * r['sample_rate']:.2g} on average"
                          for _, r in rows.iterrows())
        return Finding(topic, Level.INCONCLUSIVE,
                       f"inconclusive: no bound passes its claim ({parts}), but the control "
                       f"failed ({control}): even DP-SGD without noise would not be flagged. "
                       "Adam scales each coordinate by its own gradient history, so without "
                       "noise the data's small gradients move the other coordinates as far as a "
                       f"canary moves its own in the few lots it joins ({joins}); the canaries "
                       "show only where they join many lots of a round.", number=number,
                       control=control, advice=CONTROL_ADVICE)
    if not np.isfinite(rows["detectable_mu"].astype(float)).any():
        return Finding(topic, Level.INCONCLUSIVE,
                       f"inconclusive: every claim is above what its canaries can certify "
                       f"({parts}), so no implementation could be flagged.", number=number,
                       control=control)
    power = "; ".join(
        f"{r['scenario']}: the sum-score attacker on a correct mechanism reaches ε ≥ "
        f"{_eps(r['perfect_bound'])}, this audit {_eps(r['epsilon_lower_bound'])}; it flags a "
        f"leak from μ ≥ {r['detectable_mu']:.3g} (ε ≥ {_eps(r['detectable_epsilon'])})"
        for _, r in rows.iterrows())
    return Finding(topic, Level.NOT_DETECTED,
                   f"consistent: no measured bound passes the accountant's ε — {parts}. Only "
                   "a gross leak would show at this many canaries.",
                   power=power + "; " + control + ".", number=number, control=control)

