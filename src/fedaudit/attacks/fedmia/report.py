"""FedMIA's table and verdict finding (paper 000 Fig. 3 as numbers, measured as membership).

The verdict rests on the lower 95 % bound of the pooled patient-level AUC against same-center
non-members, read against the memorising positive control (issue 12).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from fedaudit.attacks.membership_stats import MIN_PER_CLASS, detectable_auc
from fedaudit.defenses.noise_source import SIMULATION_NOTE
from fedaudit.report.levels import Level, worst
from fedaudit.report.seeds import across_seeds, range_text
from fedaudit.report.tables import DASH, Block, Table, TableError, need
from fedaudit.report.verdict import Finding

# ROC-AUC of the membership attack: chance is 0.5.
MIA_HIGH = 0.8
# The memorising federation must reach this patient-level AUC for an AUC not detected elsewhere to
# read as "not detected" (with its power) rather than "inconclusive" (attack too weak to tell).
MIA_CONTROL_OK = 0.9


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


def membership_table(fedmia: pd.DataFrame, replicas: Mapping[str, Sequence] | None = None
                     ) -> Table:
    """FedMIA per scenario, server view and target center (paper 000 Fig. 3 as numbers, measured
    as membership): patient-level AUC with a 95 % patient-bootstrap CI against the target's own
    held-out patients, per candidate unit, the permutation p-value, and center inference (members
    vs the external center) apart. ``all`` pools the targets.

    ``replicas`` (replica -> (federation, seed), config ``seeds``): each replica's rows say
    which federation and seed they repeat, and the pooled row of a federation trained on
    several seeds gives the mean and range of its pooled AUC over them (the first unit's), what
    the verdict reads across seeds."""
    need(fedmia, MEMBERSHIP_COLUMNS, "FedMIA table")
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
    over_seeds = _pooled_over_seeds(t, replicas or {}, units[0])
    rows, last = [], None
    for rec in keys.itertuples():
        for target in targets:
            row = {"Scenario": (_run_label(rec.scenario, replicas)
                                + (" (memorising control)" if rec.control else ""))
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
            if over_seeds:
                aucs = {k: v for k, v in over_seeds.get((rec.scenario, rec.view), {}).items()
                        if np.isfinite(v)} if target == "all" else {}
                row[f"Pooled AUC over seeds, {UNIT_LABELS[units[0]]}"] = (
                    f"{np.mean(list(aucs.values())):.2f} ({range_text(aucs)}; "
                    f"{len(aucs)} seeds)" if len(aucs) > 1 else DASH)
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
    if over_seeds:
        notes.append("Training seeds (config seeds): a federation's replica trains on the same "
                     "patients with another seed (its row names the federation and seed); the "
                     "last column gives, on the federation's pooled row, the mean of its pooled "
                     "AUC over the seeds and their range (min–max).")
    read = rounds_read(t)
    if read:
        notes.append("Rounds read (FedMIA averages a candidate's Φ(z) over them; "
                     "attacks.fedmia.rounds, and every round the memorising control logs when "
                     "its train.server_log is all): "
                     + "; ".join(f"{_run_label(k, replicas)} {v}" for k, v in read.items())
                     + ".")
    data = t[t["target"].isin(targets)].reset_index(drop=True)
    return Table("membership", "Membership inference (FedMIA) against same-center non-members",
                 data, [Block(pd.DataFrame(rows))], notes)


def rounds_text(rounds: str) -> str:
    """``"35"`` -> ``"round 35"``; ``"1,2,3"`` -> ``"rounds 1–3 (3)"``; other lists listed."""
    nums = [int(r) for r in str(rounds).split(",") if r.strip()]
    if len(nums) == 1:
        return f"round {nums[0]}"
    if nums == list(range(nums[0], nums[-1] + 1)):
        return f"rounds {nums[0]}–{nums[-1]} ({len(nums)})"
    return "rounds " + ", ".join(map(str, nums))


def rounds_read(t: pd.DataFrame) -> dict[str, str]:
    """scenario -> the rounds FedMIA read from its log, in words (empty when the frame has no
    ``rounds`` column)."""
    if "rounds" not in t.columns:
        return {}
    return {str(k): rounds_text(v) for k, v in
            t[["scenario", "rounds"]].drop_duplicates("scenario").itertuples(index=False)}


def _control_rounds(control: pd.DataFrame, name: str, audited: pd.DataFrame) -> str:
    """``", read on rounds 1–10 (10) of its log,"``: the rounds the control was read on, and
    the audited federations' when they differ (the control may be read on more); empty
    without a ``rounds`` column."""
    read = rounds_read(control).get(name)
    if not read:
        return ""
    others = sorted(set(rounds_read(audited).values()) - {read})
    above = f" (the federations above: {' / '.join(others)})" if others else ""
    return f", read on {read} of its log{above},"


def _run_label(scenario: str, replicas: Mapping[str, Sequence] | None) -> str:
    if not replicas or scenario not in replicas:
        return scenario
    federation, seed = replicas[scenario]
    return f"{scenario} ({federation}, seed {int(seed)})"


def _pooled_over_seeds(t: pd.DataFrame, replicas: Mapping[str, Sequence], unit: str
                       ) -> dict[tuple[str, str], dict[int, float]]:
    """(federation, view) -> {seed: pooled patient-level membership AUC} for the federations
    with replicas (empty without any), split by :func:`seed_frames`; the federation's own run
    counts under seed -1 (its key only matters for the range and the count)."""
    if not replicas:
        return {}
    sel = t[(t["unit"] == unit) & (t["test"] == "membership") & (t["target"] == "all")]
    bases = {str(v[0]) for v in replicas.values()}
    out: dict[tuple[str, str], dict[int, float]] = {}
    for seed, frame in seed_frames(sel, {k: list(v) for k, v in replicas.items()}, -1):
        for r in frame[frame["scenario"].isin(bases)].itertuples():
            out.setdefault((str(r.scenario), str(r.view)), {})[seed] = float(r.auc)
    return out


def _pooled(data: pd.DataFrame, scenario: str, view: str, unit: str, test: str = "membership"
            ) -> pd.Series | None:
    sel = data[(data["scenario"] == scenario) & (data["view"] == view) & (data["unit"] == unit)
               & (data["test"] == test) & (data["target"] == "all")
               & (data["level"] == "patient")]
    return None if sel.empty else sel.iloc[0]


def _mia_short(r: pd.Series) -> str:
    """The pooled AUC with its interval and patient counts, for the summary table."""
    ci = (f" [{r['ci_low']:.2f}, {r['ci_high']:.2f}]" if np.isfinite(r["ci_low"]) else "")
    return (f"AUC {r['auc']:.2f}{ci}, {int(r['n_member_patients'])} vs "
            f"{int(r['n_nonmember_patients'])} patients")


def _mia_numbers(r: pd.Series) -> str:
    ci = (f"95% CI {r['ci_low']:.2f}–{r['ci_high']:.2f}" if np.isfinite(r["ci_low"])
          else "too few patients for a CI")
    return (f"AUC {r['auc']:.2f} ({ci}; {int(r['n_member_patients'])} member vs "
            f"{int(r['n_nonmember_patients'])} same-center held-out patients, permutation "
            f"p = {r['p_value']:.2f})")


def membership_finding(data: pd.DataFrame, unit: str = "slice",
                       simulation: Sequence[str] = ()) -> Finding:
    """``data``: the tidy frame of :func:`~fedaudit.report.tables.membership_table`; ``unit``:
    the candidate unit the verdict reads, fixed in advance (the first of
    ``attacks.fedmia.units``), never the better of the units measured.

    The level rests on the pooled patient-level AUC against same-center non-members (never on
    the best center), for the per-client views (client updates without SecAgg+, masked vectors
    with it): a permutation p < 0.05 is a detected leak (high when the lower 95 % bound reaches
    :data:`MIA_HIGH`), otherwise "not detected" with its power -- the AUC the patient counts
    could have seen -- when the memorising control works, "inconclusive" when it does not.
    ``simulation``: scenarios whose noise the server can regenerate
    (:func:`fedaudit.defenses.noise_source.simulation_scenarios`), said so."""
    topic = "Membership inference (FedMIA)"
    if not (data["unit"] == unit).any():
        raise ValueError(f"the membership table has no rows for unit {unit!r} (has "
                         f"{sorted(set(data['unit']))})")
    audited = data[~data["control"].astype(bool)]
    control = data[data["control"].astype(bool)]
    parts, levels, sizes, p_values = [], [], [], []
    headline = ""  # the summary table's number: the first federation read
    for view, label in (("update", "on the client updates"),
                        ("masked", "with SecAgg+, on the masked per-client vectors")):
        for scenario in dict.fromkeys(audited[audited["view"] == view]["scenario"]):
            r = _pooled(audited, scenario, view, unit)
            if r is None or not np.isfinite(r["auc"]):
                continue
            headline = headline or f"{scenario}: {_mia_short(r)}"
            level = _mia_level(r)
            levels.append(level)
            p_values.append((level, float(r["p_value"])))
            if level == Level.NOT_DETECTED:
                sizes.append((int(r["n_member_patients"]), int(r["n_nonmember_patients"])))
            note = f" ({SIMULATION_NOTE})" if scenario in simulation else ""
            parts.append(f"{scenario}{note} {label}: {_mia_numbers(r)}, {level.value}"
                         + (" by the lower bound" if level == Level.HIGH else ""))
    for scenario in dict.fromkeys(audited[audited["view"] == "aggregate"]["scenario"]):
        r = _pooled(audited, scenario, "aggregate", unit)
        if r is not None and np.isfinite(r["auc"]):
            parts.append(f"{scenario} aggregate cosine (membership in the federation): "
                         f"AUC {r['auc']:.2f}")
    what = "batches of one patient's slices" if unit == "batch" else "single slices"
    if not parts:
        return Finding(topic, Level.INCONCLUSIVE, "no patient-level result was produced.")
    text = "; ".join(parts)
    level = worst(levels)
    if level is None:
        return Finding(topic, Level.INCONCLUSIVE,
                       f"{text}: only the uncalibrated aggregate cosine was measured "
                       f"(candidates: {what}).")
    power, control_cell = "", "no memorising control"
    if not control.empty:
        c = _pooled(control, control["scenario"].iloc[0], "update", unit)
        if c is not None and np.isfinite(c["auc"]):
            on = _control_rounds(control, str(c["scenario"]), audited)
            control_cell = (f"memorising control AUC {c['auc']:.2f} (needs ≥ {MIA_CONTROL_OK}: "
                            f"{'works' if c['auc'] >= MIA_CONTROL_OK else 'fails'})")
            if c["auc"] >= MIA_CONTROL_OK:
                text += (f". The memorising control{on} reaches {_mia_numbers(c)}: the "
                         "attack works")
                power = "the memorising control is detected; "
            else:
                text += (f". The memorising control{on} reaches only {_mia_numbers(c)} (needs ≥ "
                         f"{MIA_CONTROL_OK}): the attack's power is unproven here, so an AUC "
                         "not detected above does not show that the federation resists")
                if level == Level.NOT_DETECTED:
                    level = Level.INCONCLUSIVE
    if level == Level.NOT_DETECTED:
        n1, n2 = min(n for n, _ in sizes), min(n for _, n in sizes)
        power = (f"{power}with {n1} member vs {n2} held-out patients the test detects an AUC "
                 f"of about {detectable_auc(n1, n2):.2f} or more with 80 % probability "
                 "(one-sided 5 %, normal approximation); smaller leaks go unseen.")
    # the claim: the smallest p-value among the federations at the line's level, corrected
    # for the federations tested (Bonferroni within the line)
    claim = [pv for lv, pv in p_values if lv == level and np.isfinite(pv)]
    p_line = min(1.0, min(claim) * len(p_values)) if claim and level in (
        Level.HIGH, Level.MODERATE) else np.nan
    return Finding(topic, level, f"{text} (candidates: {what}).",
                   power=power if level == Level.NOT_DETECTED else "", p_value=p_line,
                   number=headline, control=control_cell)


def _mia_level(r: pd.Series) -> Level:
    """A permutation p < 0.05 is a detected leak: high when the AUC's lower 95 % bound reaches
    :data:`MIA_HIGH`, else moderate; otherwise not detected."""
    if not r["p_value"] < 0.05:
        return Level.NOT_DETECTED
    lo = r["ci_low"] if np.isfinite(r["ci_low"]) else 0.5
    return Level.HIGH if lo >= MIA_HIGH else Level.MODERATE


def build_table(inputs: Any, params: Any) -> Table:
    replicas = getattr(params, "replicas", None)
    return membership_table(pd.read_csv(inputs.fedmia),
                            replicas=None if not replicas else dict(replicas))


def findings(data: pd.DataFrame, settings: dict[str, Any]) -> list[Finding]:
    """On one training seed, the membership finding. With replicas (config ``seeds``): the
    finding over the federations trained on every seed, read across seeds
    (:func:`fedaudit.report.seeds.across_seeds`), and, where others were attacked on the
    first seed only (the noise levels), a second line on those that says so."""
    unit, simulation = settings["unit"], settings["simulation"]
    replicas = settings.get("replicas") or {}
    if not replicas:
        return [membership_finding(data, unit=unit, simulation=simulation)]
    frames = seed_frames(data, replicas, int(settings["seed"]))
    # a seed without its own memorising control (not replicated) reads the first seed's: it
    # shows that the attack works on this pipeline and data
    control = frames[0][1][frames[0][1]["control"].astype(bool)]
    frames = [(s, f if f["control"].astype(bool).any() else pd.concat([f, control]))
              for s, f in frames]
    common = set.intersection(*(set(f["scenario"]) for _, f in frames))
    per, aucs = [], {}
    for seed, frame in frames:
        mine = frame[frame["scenario"].isin(common)]
        per.append((seed, membership_finding(mine, unit=unit, simulation=simulation)))
        audited = mine[~mine["control"].astype(bool) & (mine["view"] == "update")]
        if len(audited):
            r = _pooled(audited, audited["scenario"].iloc[0], "update", unit)
            if r is not None:
                aucs[seed] = float(r["auc"])
    first_seed, first = frames[0]
    heads = first[~first["control"].astype(bool) & (first["view"] == "update")
                  & first["scenario"].isin(common)]
    name = heads["scenario"].iloc[0] if len(heads) else "the first federation"
    out = [across_seeds(per, number=f"{name}'s pooled AUC", values=aucs)]
    # federations attacked on the first seed only, read with the control for the test's power
    rest = first[~first["scenario"].isin(common) | first["control"].astype(bool)]
    if (~rest["control"].astype(bool)).any():
        line = membership_finding(rest, unit=unit, simulation=simulation)
        out.append(replace(line, topic=f"{line.topic}, federations trained on one seed",
                           sentence=line.sentence.rstrip() + f" Read on one training seed "
                           f"({first_seed}): these federations are not replicated."))
    return out


def seed_frames(data: pd.DataFrame, replicas: dict[str, list], study_seed: int
                ) -> list[tuple[int, pd.DataFrame]]:
    """The table's rows per training seed, each replica's under the name of the federation it
    repeats (``replicas``: replica -> [federation, seed]); the study's seed holds every
    federation's first run, each further seed its replicas."""
    seed_of = {r: int(v[1]) for r, v in replicas.items()}
    base_of = {r: str(v[0]) for r, v in replicas.items()}
    seeds = [study_seed] + sorted(set(seed_of.values()) - {study_seed},
                                  key=list(seed_of.values()).index)
    tagged = data.assign(_seed=data["scenario"].map(seed_of).fillna(study_seed).astype(int),
                         scenario=data["scenario"].map(lambda n: base_of.get(n, n)))
    return [(s, tagged[tagged["_seed"] == s].drop(columns="_seed").reset_index(drop=True))
            for s in seeds if (tagged["_seed"] == s).any()]


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """What the verdict reads from the config: one unit, fixed before any result (the first
    configured), never the better of the units measured; the replicas of the config's further
    training seeds (replica -> [federation, seed]) and the study's seed."""
    from fedaudit.defenses.noise_source import simulation_scenarios
    from fedaudit.scenarios import scenarios_from_config

    replicas = {n: [s.replica_of, s.seed] for n, s in scenarios_from_config(config).items()
                if s.replica_of is not None}
    out = {"unit": config["attacks"]["fedmia"]["units"][0],
           "simulation": simulation_scenarios(config)}
    # only with replicas: a one-seed study's settings (a param of the front page) stay as they were
    return out | ({"replicas": replicas, "seed": int(config["seed"])} if replicas else {})


def thresholds(settings: dict[str, Any]) -> str:
    return (f"membership, a pooled patient-level AUC with permutation p < 0.05: high when its "
            f"lower 95% bound is ≥ {MIA_HIGH}, else moderate; not detected otherwise, read "
            f"only when the memorising control reaches AUC ≥ {MIA_CONTROL_OK}")


def advice(level: str) -> str:
    """What a reader does about a membership finding (the front page's summary table)."""
    return {
        "high": "the server tells which patients trained: add client-side DP (DP-SGD or "
                "DP-FedAvg) at a budget the privacy-utility table prices",
        "moderate": "patients' participation leaks to the server: add client-side DP; its "
                    "utility cost is in the privacy-utility table",
        "inconclusive": "no conclusion: the memorising control or the patient count is too "
                        "weak; do not read as safe",
    }.get(str(level), "")
