"""The noise replay's rule steps (called by ``workflow/scripts/step.py`` through the catalog):
``attack`` replays the noise of every logged update of one scenario."""

from __future__ import annotations

import logging

import pandas as pd

from fedaudit.atomic import write_csv
from fedaudit.attacks.noise_replay.replay import attack_round, replayable, replayable_names
from fedaudit.catalog import Job
from fedaudit.federation.server_log import load_round, resolve_rounds
from fedaudit.scenarios import noise_defense


def attack(job: Job, log: logging.Logger) -> None:
    """Rule noise_replay: one row per logged round and client of one scenario. The attacker
    uses the server log, the scenario's defense entry and the config's seed: all server-side."""
    p, wc = job.params, job.wildcards
    entry = noise_defense(p.defenses)
    if entry is None or not replayable(entry["name"]):
        raise ValueError(f"scenario {wc.scenario!r} adds no noise to its updates "
                         f"(replayable: {', '.join(replayable_names())})")
    rows = []
    for rnd in resolve_rounds(job.input.server_log, p.rounds):
        logged = load_round(job.input.server_log, rnd)
        got = attack_round(logged.updates, logged.names, logged.update_file, entry,
                           int(p.seed), rnd)
        for r in got:
            if r["attacked"]:
                log.info("round %d, center %s: residual %.4g (null %.4g), noise removed %.3f "
                         "-> %s; control removed %.3f", rnd, r["center"], r["residual_norm"],
                         r["null_residual_norm"], r["removed_share"],
                         "RECOVERED" if r["recovered"] else "not recovered",
                         r["control_removed_share"])
        rows += got
    frame = pd.DataFrame(rows)
    frame.insert(0, "scenario", wc.scenario)
    write_csv(frame, job.output.table, index=False)
