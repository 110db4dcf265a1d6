"""The privacy audit's rule step (called by ``workflow/scripts/step.py`` through the catalog):
``attack`` runs one scenario's canary clients and writes the server's score of each."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from fedaudit.atomic import write_csv
from fedaudit.attacks.privacy_audit.canaries import INCLUSION_SOURCE, canary_name
from fedaudit.attacks.privacy_audit.federation import (
    canary_norm,
    noise_energy,
    noise_mods,
    run_canaries,
)
from fedaudit.catalog import Job
from fedaudit.defenses.budgets import scenario_budget
from fedaudit.defenses.noise_source import source_of
from fedaudit.federation.server_log import load_round, resolve_rounds
from fedaudit.scenarios import Scenario, noise_defense


def attack(job: Job, log: logging.Logger) -> None:
    """Rule privacy_audit: one row per canary of one scenario (its round, the auditor's bit,
    each attack's score) with the scenario's claim: the one-round ε of its noise at its δ."""
    from fedaudit.attacks.privacy_audit.plugin import auditable
    from fedaudit.federation.plan import TrainPlan

    p, wc = job.params, job.wildcards
    scenario = Scenario.from_dict(p.scenario)
    why = auditable(scenario.defenses)
    if why is not None:
        raise ValueError(f"scenario {wc.scenario!r} cannot be audited with canary clients: {why}")
    seed = int(scenario.seed if scenario.seed is not None else p.seed)
    plan = TrainPlan(scenario=scenario, clients=(), out_dir=str(Path(job.output.table).parent),
                     seed=seed, plugins=tuple(p.plugins))
    entry = noise_defense(scenario.defenses)
    rnd = resolve_rounds(job.input.server_log, "last")[0]
    logged = load_round(job.input.server_log, rnd)
    global_arrays = [logged.global_arrays[n] for n in logged.names]
    own = [c for c in sorted(logged.updates)
           if logged.update_file[c].startswith(f"update_{c}.")]
    updates = [[logged.updates[c][n] for n in logged.names] for c in own]
    norm, basis = canary_norm(entry, updates, float(p.norm_factor))
    # the federation's own clients: did their logged updates get the noise the claim assumes?
    # (powered where the clip bounds the update: DP-FedAvg)
    energy = noise_energy(entry, updates) if entry is not None and "clip" in entry else []
    if energy:
        log.info("round %d: %d/%d client updates without the claimed noise (energy over the "
                 "noise's: %s)", rnd, sum(m for _, m in energy), len(energy),
                 ", ".join(f"{c} {r:.3f}" for c, (r, _) in zip(own, energy, strict=True)))
    rounds = int(p.rounds)
    one_round = scenario_budget(scenario.defenses, 1)
    whole = scenario_budget(scenario.defenses, rounds)
    claimed = float(one_round["epsilon"])
    m = int(p.canaries if np.isfinite(claimed) else p.unclaimed_canaries)
    delta = float(entry["delta"]) if entry is not None and "delta" in entry else float(p.delta)
    # the auditor's secret: drawn once, before the first round, from the OS's entropy
    included = np.random.default_rng().random(m) < 0.5
    size = sum(int(np.prod(np.shape(a))) for a in global_arrays)
    log.info("%s: %d canary clients over %d rounds (%d per round), update norm %.4g (%s), "
             "%d parameters; claimed one-round ε %s at δ = %g", wc.scenario, m, rounds,
             -(-m // rounds), norm, basis, size,
             f"{claimed:.4g}" if np.isfinite(claimed) else "none", delta)
    run = run_canaries(noise_mods(plan), entry, seed, global_arrays, m, rounds, norm,
                       included, progress=log.info)
    log.info("%d canaries in %.1f s (%.1f ms each)", m, run.seconds, 1e3 * run.seconds / m)
    frame = pd.DataFrame({
        "canary": [canary_name(i) for i in range(m)], "round": run.rounds,
        "included": run.included, **{f"score_{a}": s for a, s in run.scores.items()}})
    meta = {"scenario": wc.scenario, "defense": "none" if entry is None else entry["name"],
            "level": np.nan, "noise_source": source_of(entry) if entry else "",
            "canaries": m, "rounds": rounds, "canary_norm": norm, "norm_basis": basis,
            "clip": float(entry["clip"]) if entry is not None and "clip" in entry else np.nan,
            "parameters": size, "epsilon_claimed": claimed,
            "epsilon_run": float(whole["epsilon"]), "delta": delta,
            "inclusion_source": INCLUSION_SOURCE, "seconds": run.seconds,
            "clients_checked": len(energy),
            "clients_without_noise": sum(missing for _, missing in energy),
            "noise_energy_min": min((r for r, _ in energy), default=np.nan)}
    if entry is not None:
        from fedaudit.defenses.update_noise import level_of, update_noise_std

        meta.update(level=level_of(entry), noise_std=update_noise_std(entry))
    else:
        meta["noise_std"] = 0.0
    for i, (k, v) in enumerate(meta.items()):
        frame.insert(i, k, v)
    write_csv(frame, job.output.table, index=False)



def attack_sample(job: Job, log: logging.Logger) -> None:
    """Rule privacy_audit_sample: one client's DP-SGD round of a scenario re-run with sample-level
    canaries and again without noise (:func:`.sample_round.audit_rows`); one row per canary and
    run."""
    import torch

    from fedaudit.attacks.privacy_audit.sample_round import audit_rows
    from fedaudit.federation.plan import attacked_plan
    from fedaudit.io import read_json
    from fedaudit.preprocess.outliers import read_excluded

    p, wc = job.params, job.wildcards
    torch.set_num_threads(max(1, job.threads))
    plan = attacked_plan(p, job.config, [read_json(f) for f in job.input.splits],
                         read_excluded(job.input.qc_flags))
    rnd = resolve_rounds(job.input.server_log, "last")[0]
    logged = load_round(job.input.server_log, rnd)
    frame = audit_rows(plan, wc.scenario, [logged.global_arrays[n] for n in logged.names], rnd,
                       p.sample_level, progress=log.info)
    write_csv(frame, job.output.table, index=False)
