"""The privacy audit's table (one row per audited scenario) and its verdict findings: one line
per audited noise family, read against the control (canaries without noise).

Per scenario, from its canaries' scores (``steps.py``): the guesses and right guesses of the
attack that certifies more (:func:`.canaries.audit`, each attack at half the confidence), the
one-run ε lower bound, the accountant's one-round ε and its status, Andrew et al.'s estimate,
and two references for power:

- the *ceiling*: the bound when every guess is right, the most ``m`` canaries certify (a claim
  above it cannot be refuted by this audit);
- the *perfect attacker* on the mechanism itself: Gaussian scores N(μ·1[in], 1) with the
  level's μ (the clipped canary's norm over the noise's per-coordinate std: 1/z for DP-FedAvg;
  for Laplace the score's noise is a sum over many coordinates, near Gaussian), guessed and
  bounded as the audit is (:mod:`.references`); and the smallest μ at
  which that attacker's bound exceeds the claim (the leak the audit would flag), with its ε.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from fedaudit.attacks.privacy_audit.canaries import (
    ATTACKS,
    CONSISTENT,
    NO_CLAIM,
    VIOLATED,
    CanaryDesign,
    audit,
)
from fedaudit.attacks.privacy_audit.one_run import Guesses, ceiling, guess, p_value
from fedaudit.attacks.privacy_audit.references import eps_cell as _eps
from fedaudit.attacks.privacy_audit.references import flagged_from, reference_bound
from fedaudit.attacks.privacy_audit.sample_report import NOTES as SAMPLE_NOTES
from fedaudit.attacks.privacy_audit.sample_report import (
    sample_block,
    sample_findings,
    summarise_sample,
)
from fedaudit.defenses.budgets import level_symbol, noise_label
from fedaudit.defenses.noise_source import SIMULATION, SIMULATION_NOTE
from fedaudit.report.levels import Level
from fedaudit.report.tables import DASH, Block, Table, TableError, need
from fedaudit.report.verdict import Finding

TOPIC = "Privacy audit (one run): {label}"
NEEDED = ["scenario", "defense", "level", "noise_source", "canaries", "rounds", "canary_norm",
          "norm_basis", "clip", "noise_std", "parameters", "epsilon_claimed", "epsilon_run",
          "delta", "canary", "round", "included", *[f"score_{a}" for a in ATTACKS]]
# the control (no noise) must reach this share of its ceiling, as the power criterion
# asks of the positive control; a no-claim level this close to its ceiling is as exposed as an
# update without noise
CONTROL_SHARE = 0.8


def _bonferroni_p(guessed: list[Guesses], eps: float, delta: float) -> float:
    """The audit's p-value for "the mechanism is (ε, δ)-DP" from each attack's guesses: the
    smaller attack's p-value times the number of attacks (each attack is read at level
    α/|attacks|)."""
    best = min(p_value(g.m, g.r, g.v, eps, delta) for g in guessed)
    return min(1.0, best * len(guessed))


def summarise(rows: pd.DataFrame, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per audited scenario (module docstring)."""
    need(rows, NEEDED, "privacy audit results")
    out = []
    for scenario, sub in rows.groupby("scenario", sort=False):
        first = sub.iloc[0]
        m = len(sub)
        design = CanaryDesign(m=m, confidence=confidence)
        per_attack = CanaryDesign(m=m, confidence=1.0 - (1.0 - confidence) / len(ATTACKS))
        scores = {a: sub[f"score_{a}"].to_numpy(float) for a in ATTACKS}
        included = sub["included"].astype(bool).to_numpy()
        claimed = float(first["epsilon_claimed"])
        claim = claimed if math.isfinite(claimed) else None
        delta = float(first["delta"])
        res = audit(scores, included, design, claim, delta)
        k_in, k_out = design.guesses()
        guessed = [guess(s, included, k_in, k_out) for s in scores.values()]
        std, norm = float(first["noise_std"]), float(first["canary_norm"])
        clip = float(first["clip"])
        sent = min(norm, clip) if math.isfinite(clip) else norm
        mu = sent / std if std > 0 else math.inf
        row: dict[str, Any] = {
            "scenario": scenario, "canary_level": "client", "defense": first["defense"],
            "level": float(first["level"]),
            "noise_source": first["noise_source"], "canaries": m,
            "rounds": int(first["rounds"]), "included": int(included.sum()),
            "canary_norm": norm, "norm_basis": first["norm_basis"], "clip": clip,
            "parameters": int(first["parameters"]), "guesses": res.guesses,
            "correct": res.correct, "attack": res.attack,
            "epsilon_lower_bound": res.epsilon_lower_bound,
            "epsilon_estimate": res.epsilon_estimate, "epsilon_claimed": claimed,
            "epsilon_run": float(first["epsilon_run"]), "delta": delta, "status": res.status,
            "confidence": confidence,
            "ceiling": ceiling(m, res.guesses, delta, per_attack.confidence),
            "mu": mu, "perfect_bound": reference_bound(mu, per_attack, seed, delta),
            "p_claim": (_bonferroni_p(guessed, claimed, delta) if claim is not None
                        else np.nan),
            "p_zero": _bonferroni_p(guessed, 0.0, delta),
            # the federation's own clients' logged updates (DP-FedAvg): with the noise?
            "clients_checked": int(first.get("clients_checked", 0) or 0),
            "clients_without_noise": int(first.get("clients_without_noise", 0) or 0),
            "noise_energy_min": float(first.get("noise_energy_min", np.nan))}
        if row["clients_without_noise"]:
            row["status"] = VIOLATED
        if claim is not None:
            mu_flag, eps_flag = flagged_from(claimed, per_attack, seed, delta)
            row.update(detectable_mu=mu_flag, detectable_epsilon=eps_flag)
        out.append(row)
    return pd.DataFrame(out)


def _noise(r: pd.Series) -> str:
    if r["defense"] == "none":
        return "none (control)"
    text = f"{noise_label(r['defense'])}, {level_symbol(r['defense'])} = {r['level']:g}"
    return text + (f" ({SIMULATION_NOTE})" if r["noise_source"] == SIMULATION else "")


def _status(r: pd.Series) -> str:
    if r["clients_without_noise"]:
        return (f"violated: {int(r['clients_without_noise'])} of the federation's client "
                "updates carry less energy than the claimed noise alone")
    if r["status"] == VIOLATED:
        return (f"violated: the bound is above the claim (p = {r['p_claim']:.2g}, "
                f"{len(ATTACKS)} attacks)")
    if r["status"] == CONSISTENT:
        return "consistent (not a proof: see the flagged leak)"
    return "no claim"


def audit_table(data: pd.DataFrame) -> Table:
    """The client-level rows' block, then the sample-level rows' (:mod:`.sample_report`)."""
    sample = data[data["canary_level"] == "sample"] if "canary_level" in data else data.iloc[:0]
    client = data.drop(sample.index)
    blocks, notes = [], []
    if len(client):
        blocks.append(_client_block(client, titled=bool(len(sample))))
        notes += CLIENT_NOTES
    if len(sample):
        blocks.append(sample_block(sample))
        notes += SAMPLE_NOTES
    return Table("privacy_audit", "Privacy audit: ε measured in one run beside the ε claimed",
                 data, blocks, notes)


def _client_block(data: pd.DataFrame, titled: bool) -> Block:
    view = []
    for _, r in data.iterrows():
        claimed = r["epsilon_claimed"]
        view.append({
            "Scenario": r["scenario"], "Noise": _noise(r),
            "Canaries (rounds)": f"{int(r['canaries'])} ({int(r['rounds'])}), "
                                 f"{int(r['included'])} in",
            "Update norm": f"{r['canary_norm']:.3g} ({r['norm_basis']})",
            "Right guesses": f"{int(r['correct'])}/{int(r['guesses'])} ({r['attack']})",
            "ε ≥ (95 %)": _eps(r["epsilon_lower_bound"]),
            "Claimed ε: one round (whole run)": (
                f"{claimed:.3g} ({r['epsilon_run']:.3g}) at δ = {r['delta']:g}"
                if math.isfinite(claimed) else "none"),
            "Andrew et al. estimate": _eps(r["epsilon_estimate"]),
            "Most m certifies": _eps(r["ceiling"]),
            "Perfect attacker on the mechanism": (
                f"{_eps(r['perfect_bound'])} (μ = {r['mu']:.3g})" if math.isfinite(r["mu"])
                else f"{_eps(r['perfect_bound'])} (no noise)"),
            "Flagged from": (
                f"μ ≥ {r['detectable_mu']:.3g} (one-round ε ≥ "
                f"{_eps(r['detectable_epsilon'])})"
                if math.isfinite(r.get("detectable_mu", np.nan)) else
                ("the claim is above the ceiling: nothing can be flagged"
                 if r["status"] != NO_CLAIM else DASH)),
            "Clients' updates with the noise": (
                f"{int(r['clients_checked']) - int(r['clients_without_noise'])}/"
                f"{int(r['clients_checked'])} (energy ≥ {r['noise_energy_min']:.3f} of the "
                "noise's)" if r["clients_checked"] else DASH),
            "Status": _status(r)})
    return Block(pd.DataFrame(view), title=(
        "Client level: canary clients in the federation (the server's view of their messages)"
        if titled else None))


CLIENT_NOTES = [
        "Canary clients run the scenario's own client mods (its noise defense, with its noise "
        "source) and are left out of aggregation; each takes part in one round, with its "
        "update (a random direction at the norm shown) or nothing, by a draw from the "
        "operating system's entropy that the server cannot derive: that draw is fresh in "
        "every run, so a row's counts move from run to run.",
        "The server scores each message along the canary's direction, directly and after "
        "subtracting the noise it can regenerate from the config; it guesses \"in\" on the "
        "highest and \"out\" on the lowest scores (⌊m/2 − 1.5√m⌋ each), and the right "
        "guesses give the ε lower bound of Steinke, Nasr & Jagielski (NeurIPS 2023) at "
        "95 % (each attack at 97.5 %, the larger reported).",
        "Status: violated when the bound is above the one-round ε the accountant claims "
        "(add/remove one hospital: a canary's update or none): the noise code, or its "
        "accounting, is wrong. Consistent is not a proof: the audit flags only what it can "
        "certify (\"Most m certifies\"), and \"Flagged from\" is the leak (μ-GDP, one "
        "round) at which a perfect attacker's bound passes the claim.",
        "Clients' updates with the noise (DP-FedAvg): the federation's own clients' updates "
        "in the last logged round, each checked to carry at least the energy of the claimed "
        "noise (dσ², less five standard deviations): an update clipped to C without noise has "
        "at most C², far below; one below is a violation whatever the canaries show.",
        "Andrew et al. (ICLR 2024): ε of Gaussians fitted to the two groups' scores, a point "
        "estimate, not a bound; it can exceed a correct claim by chance."]


def build_table(inputs: Any, params: Any) -> Table:
    samples = list(getattr(inputs, "samples", []) or [])
    if not len(inputs.audits) and not samples:
        raise TableError("no audited scenario")
    confidence, seed = float(params.confidence), int(params.seed)
    parts = []
    if len(inputs.audits):
        rows = pd.concat([pd.read_csv(f) for f in inputs.audits], ignore_index=True)
        parts.append(summarise(rows, confidence, seed))
    if samples:
        rows = pd.concat([pd.read_csv(f) for f in samples], ignore_index=True)
        parts.append(summarise_sample(rows, confidence, seed))
    return audit_table(pd.concat(parts, ignore_index=True))


def _control(data: pd.DataFrame) -> tuple[bool, str]:
    """Whether the control (canaries without noise) reached :data:`CONTROL_SHARE` of its
    ceiling, and the phrase that says so."""
    ctl = data[data["defense"] == "none"]
    if ctl.empty:
        return False, "no control was audited (baseline: canaries without noise)"
    r = ctl.iloc[0]
    ok = bool(r["epsilon_lower_bound"] >= CONTROL_SHARE * r["ceiling"])
    return ok, (f"without noise ({r['scenario']}) {int(r['correct'])}/{int(r['guesses'])} "
                f"guesses right, ε ≥ {_eps(r['epsilon_lower_bound'])} of at most "
                f"{_eps(r['ceiling'])}" + ("" if ok else " — the control failed"))


def _row_text(r: pd.Series) -> str:
    return (f"{r['scenario']}: ε ≥ {_eps(r['epsilon_lower_bound'])} measured "
            f"({int(r['correct'])}/{int(r['guesses'])} right of {int(r['canaries'])} canaries)")


def findings(data: pd.DataFrame, settings: dict[str, Any]) -> list[Finding]:
    if "canary_level" not in data:
        data = data.assign(canary_level="client")
    sample = data[data["canary_level"] == "sample"]
    data = data[data["canary_level"] != "sample"]
    control_ok, control = _control(data)
    out = [sample_findings(TOPIC.format(label=noise_label(defense)) + " (sample level)", sub)
           for defense, sub in sample.groupby("defense", sort=False)]
    for defense, sub in data[data["defense"] != "none"].groupby("defense", sort=False):
        label = noise_label(defense)
        topic = TOPIC.format(label=label)
        claimed = sub[sub["status"] != NO_CLAIM]
        summary = {"control": control}
        if len(claimed):
            out.append(_claim_finding(topic, claimed, control_ok, control, summary))
        free = sub[sub["status"] == NO_CLAIM]
        if len(free):
            out.append(_no_claim_finding(topic, label, free, control_ok, control, summary))
    if not out:
        ok = "" if control_ok else " (" + control + ")"
        return [Finding(TOPIC.format(label="noise on client updates"), Level.NOTHING,
                        "nothing to audit: no audited scenario noises its clients' updates"
                        + ok + ".", control=control)]
    return out


def _claim_finding(topic: str, rows: pd.DataFrame, control_ok: bool, control: str,
                   summary: dict[str, str]) -> Finding:
    bad = rows[rows["status"] == VIOLATED]
    worst = rows.loc[rows["epsilon_lower_bound"].idxmax()]
    number = (f"ε ≥ {_eps(worst['epsilon_lower_bound'])} measured vs "
              f"{worst['epsilon_claimed']:.3g} claimed (one round)")
    if len(bad):
        parts = [(f"{r['scenario']}: {int(r['clients_without_noise'])}/"
                  f"{int(r['clients_checked'])} of the federation's client updates carry less "
                  f"energy than the claimed noise alone ({r['noise_energy_min']:.3g} of it)"
                  if r["clients_without_noise"] else
                  f"{_row_text(r)} against a claimed one-round ε of {r['epsilon_claimed']:.3g} "
                  f"(p = {r['p_claim']:.2g})")
                 + (f"; {SIMULATION_NOTE}" if r["noise_source"] == SIMULATION else "")
                 for _, r in bad.iterrows()]
        # a client update without its noise is certain (five standard deviations), not a
        # significance claim to correct: only the canaries' p-values enter Holm's family
        canary = bad[bad["clients_without_noise"] == 0]
        return Finding(topic, Level.HIGH,
                       "violated: the clients' noise leaks more than its accountant claims — "
                       + "; ".join(parts) + ". The noise code or its accounting is wrong: "
                       "every ε it reports is void.",
                       p_value=(float(canary["p_claim"].min()) if len(canary) == len(bad)
                                else float("nan")), number=number, **summary)
    parts = [f"{_row_text(r)}, claimed {r['epsilon_claimed']:.3g} for one round "
             f"({r['epsilon_run']:.3g} over {int(r['rounds'])})"
             + (f", and {int(r['clients_checked'])}/{int(r['clients_checked'])} of its "
                "clients' updates carry the noise" if r["clients_checked"] else "")
             for _, r in rows.iterrows()]
    if not control_ok:
        return Finding(topic, Level.INCONCLUSIVE,
                       "inconclusive: no bound passes its claim (" + "; ".join(parts) + "), "
                       "but " + control + ", so the audit shows nothing.", number=number,
                       **summary)
    if not np.isfinite(rows["detectable_mu"].astype(float)).any():
        return Finding(topic, Level.INCONCLUSIVE,
                       "inconclusive: every claim is above what its canaries can certify ("
                       + "; ".join(f"{r['scenario']}: {r['epsilon_claimed']:.3g} claimed, at "
                                   f"most {_eps(r['ceiling'])} from {int(r['canaries'])} "
                                   "canaries" for _, r in rows.iterrows())
                       + "), so no implementation could be flagged; more canaries (or a "
                       "smaller claim) make the audit able to refute it.", number=number,
                       **summary)
    power = "; ".join(
        f"{r['scenario']}: a perfect attacker on a correct mechanism reaches ε ≥ "
        f"{_eps(r['perfect_bound'])}, this audit {_eps(r['epsilon_lower_bound'])}; "
        + (f"it flags a leak from μ ≥ {r['detectable_mu']:.3g} (one-round ε ≥ "
           f"{_eps(r['detectable_epsilon'])}), {int(r['canaries'])} canaries certifying at "
           f"most {_eps(r['ceiling'])}" if math.isfinite(r["detectable_mu"]) else
           f"the claim is above the {_eps(r['ceiling'])} that {int(r['canaries'])} canaries "
           "can certify, so nothing could be flagged")
        for _, r in rows.iterrows())
    return Finding(topic, Level.NOT_DETECTED,
                   "consistent: no measured bound passes the accountant's ε — "
                   + "; ".join(parts) + ". Only a gross leak would show at this many "
                   "canaries.", power=power + "; " + control + ".", number=number, **summary)


def _no_claim_finding(topic: str, label: str, rows: pd.DataFrame, control_ok: bool,
                      control: str, summary: dict[str, str]) -> Finding:
    exposed = rows[rows["epsilon_lower_bound"] >= CONTROL_SHARE * rows["ceiling"]]
    leak = rows[rows["p_zero"] < 0.05]
    worst = rows.loc[rows["epsilon_lower_bound"].idxmax()]
    number = f"ε ≥ {_eps(worst['epsilon_lower_bound'])} measured (no ε claimed)"
    parts = "; ".join(_row_text(r) for _, r in rows.iterrows())
    if len(exposed):
        return Finding(topic, Level.HIGH,
                       f"no claim ({label} noise has no clip and no ε), and the server tells a "
                       f"canary client's update from none as well as without noise: {parts}. "
                       f"At {', '.join(exposed['scenario'])} the noise hides no client's "
                       "update from the server.",
                       p_value=float(exposed["p_zero"].min()), number=number,
                       advice=NO_CLAIM_ADVICE, **summary)
    if len(leak):
        return Finding(topic, Level.MODERATE,
                       f"no claim ({label} noise has no clip and no ε); the server tells canary "
                       f"clients apart beyond chance: {parts}.",
                       p_value=float(leak["p_zero"].min()), number=number,
                       advice=NO_CLAIM_ADVICE, **summary)
    if not control_ok:
        return Finding(topic, Level.INCONCLUSIVE, f"inconclusive: {parts}, but {control}.",
                       number=number, **summary)
    return Finding(topic, Level.NOT_DETECTED,
                   f"no claim ({label} noise has no ε); no canary told apart beyond chance: "
                   f"{parts}.",
                   power=f"{control}; a perfect attacker on the mechanism reaches ε ≥ "
                         f"{_eps(worst['perfect_bound'])} at μ = {worst['mu']:.3g}.",
                   number=number, **summary)


def thresholds(settings: dict[str, Any]) -> str:
    return ("privacy audit: high when the 95 % ε lower bound of a DP level is above its "
            "accountant's one-round ε (violated), or when a level without an ε claim is told "
            f"apart within {CONTROL_SHARE:.0%} of what its canaries can certify; moderate when a "
            "no-claim level's canaries are told apart beyond chance (ε > 0 at 95 %); consistent "
            "(not detected) only with the control (canaries without noise) at "
            f"≥ {CONTROL_SHARE:.0%} of its ceiling")


# what to do about a level without an ε claim whose canaries the server tells apart
NO_CLAIM_ADVICE = ("this noise does not hide a client's update from the server: use DP-FedAvg, "
                   "whose clip bounds what one update shows, at an ε you accept")


def advice(level: str) -> str:
    """What a reader does about a privacy-audit finding (the front page's summary table); a
    level without an ε claim gives its own (:data:`NO_CLAIM_ADVICE`)."""
    return {
        "high": "do not trust this ε: the noise code or its accounting is wrong; fix it "
                "before reading any ε of this defense",
        "moderate": NO_CLAIM_ADVICE,
        "not detected": "no violation at this power; only a gross leak would show",
        "inconclusive": "no conclusion: the control failed; do not read as safe",
    }.get(str(level), "")
