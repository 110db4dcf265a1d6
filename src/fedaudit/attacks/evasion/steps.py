"""The evasion attack's rule steps (called through :func:`fedaudit.catalog.run_step`):

* ``attack`` -- one scenario: the attacker's last-round local model (white-box), every other
  client's and the final global model (:mod:`.local_models`), the attacker's test slices, every
  setting of the sweep (:mod:`.sweep`) crafted on the white-box model and scored on every model
  (:mod:`.run`); one row per setting × model × slice;
* ``summary`` -- every scenario's rows in one CSV and the rates (:func:`.metrics.rates`) at the
  configured success threshold, which only this step reads (changing it re-runs no attack);
* ``figure_epsilon``, ``figure_alpha``, ``figure_example`` -- the figures
  (:mod:`fedaudit.attacks.evasion.figures`).

torch is imported inside the functions: the figure steps run without it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedaudit.archives import load_npz
from fedaudit.atomic import save_npz, write_csv
from fedaudit.attacks.evasion.sweep import settings_from_config
from fedaudit.catalog import Job
from fedaudit.io import read_json, write_json
from fedaudit.preprocess.outliers import read_excluded


def _plan(job: Job) -> Any:
    """The attacked scenario's federation (for recomputing a local model)."""
    from fedaudit.federation.plan import attacked_plan

    return attacked_plan(job.params, job.config, [read_json(f) for f in job.input.splits],
                         read_excluded(job.input.qc_flags))


def attack(job: Job, log: logging.Logger) -> None:
    """Rule evasion: craft on the attacker's own model, score on every model."""
    import torch

    from fedaudit.attacks.evasion.local_models import last_round_models, log_holds_updates
    from fedaudit.attacks.evasion.run import (
        attack_slices,
        constant_mae,
        craft_all,
        example,
        score,
    )
    from fedaudit.attacks.views import ClientView
    from fedaudit.data.slices import load_volume
    from fedaudit.models.device import resolve_device
    from fedaudit.scenarios import Scenario

    p, scenario_name = job.params, job.wildcards.scenario
    cfg = p.evasion
    attacker = cfg["attacker"]
    threads = max(1, job.threads)
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # denormal input gradients slow a CPU step by ~5-10 %
    dev = resolve_device(job.device())
    scenario = Scenario.from_dict(p.scenario)
    view = ClientView(attacker, job.input.server_log, job.input.model, p.model_base)
    from_log = log_holds_updates(scenario)
    rnd, local = last_round_models(view, None if from_log else _plan(job), list(p.centers),
                                   from_log, threads)
    models: dict[str, tuple[str, torch.nn.Module]] = {}
    for m in local:
        if m.center == attacker:
            models[m.center] = ("whitebox", m.model)
    models["global"] = ("global", view.final_model())
    for m in local:
        if m.center != attacker:
            models[m.center] = ("victim", m.model)
    excluded = read_excluded(job.input.qc_flags)
    folders = [f for f in p.test_folders if (attacker, Path(f).name) not in excluded]
    data = attack_slices([load_volume(f) for f in folders], int(cfg["slices"]))
    settings = settings_from_config(cfg)
    log.info("%s: attacker %s, %d test slices of %d patient(s), %d settings, models: %s",
             scenario_name, attacker, len(data), len({q["patient"] for q in data.provenance}),
             len(settings), {k: v[0] for k, v in models.items()})
    # the attacker's model must produce a finite sCT for a gradient to exist; whether it beats
    # the constant predictor is the evaluator's question (rows flagged, not dropped)
    constant_hu = float(read_json(job.input.constant)["value_hu"])
    _, usable = score({attacker: models[attacker]}, data, [], {}, cfg, dev)
    crafted = craft_all(models[attacker][1], data, settings, cfg, p.seed, dev) \
        if usable[attacker] else {}
    rows, usable = score(models, data, settings, crafted, cfg, dev, constant_hu)
    headline = next((s for s in settings if s.headline and s.method != "random"), None)
    ex = example(models, data, headline, crafted, rows, cfg, dev) if headline else {}
    frame = pd.DataFrame(rows)
    frame.insert(0, "attacker", attacker)
    frame.insert(0, "scenario", scenario_name)
    Path(job.output.slices).parent.mkdir(parents=True, exist_ok=True)
    write_csv(frame, job.output.slices, index=False)
    save_npz(job.output.example, compressed=True, **ex)
    clean = {}
    if len(frame):
        clean = frame[frame["setting"] == frame["setting"].iloc[0]].groupby(
            "model")["clean_mae"].mean().to_dict()
    write_json({"scenario": scenario_name, "attacker": attacker, "round": rnd,
                "local_models": "server_log" if from_log else "recomputed",
                "device": str(dev), "slices": len(data),
                "constant_mae": constant_mae(data, constant_hu),
                "patients": sorted({q["patient"] for q in data.provenance}),
                "models": [{"model": k, "role": v[0], "usable": usable[k],
                            "clean_mae": clean.get(k, float("nan"))}
                           for k, v in models.items()]}, job.output.meta)
    if not crafted:
        log.warning("%s: the attacker's local model outputs a non-finite sCT; nothing was "
                    "crafted", scenario_name)
    for k, ok in usable.items():
        if not ok:
            log.warning("%s: model %s is no usable model (non-finite sCT, or a clean MAE not "
                        "below the constant predictor's %.1f HU): its rows are not scored",
                        scenario_name, k, constant_mae(data, constant_hu))
    for s in settings:
        if s.key in crafted and crafted[s.key][2]:
            log.info("%-40s %.3f s per batch of %d", s.key, float(np.mean(crafted[s.key][2])),
                     int(cfg["batch_size"]))


def summary(job: Job, log: logging.Logger) -> None:
    """Rule evasion_summary: every scenario's rows, the rates, the models' provenance."""
    from fedaudit.attacks.evasion.metrics import aasr, rates

    frames = [pd.read_csv(f) for f in job.input.slices]
    frames = [f for f in frames if len(f)]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    write_csv(rows, job.output.slices, index=False)
    table = rates(rows, float(job.params.threshold_hu))
    write_csv(table, job.output.rates, index=False)
    models = [{"scenario": m["scenario"], "attacker": m["attacker"], "round": m["round"],
               "local_models": m["local_models"], "slices": m["slices"],
               "patients": len(m["patients"]), **entry}
              for m in map(read_json, job.input.meta) for entry in m["models"]]
    write_csv(pd.DataFrame(models), job.output.models, index=False)
    if len(table):
        head = table[table["headline"].astype(bool) & (table["method"] != "random")]
        log.info("headline setting, ASR per model:\n%s",
                 head[["scenario", "label", "model", "role", "n_slices", "asr", "ci_low",
                       "null_asr", "delta_mae", "transfer_rate"]].round(3).to_string(index=False))
        log.info("AASR per scenario and setting:\n%s", aasr(table).round(3).to_string())
    log.info("threshold %.1f HU; settings %s", job.params.threshold_hu,
             json.dumps(job.params.settings, sort_keys=True))


def figure_epsilon(job: Job, log: logging.Logger) -> None:
    """Rule figure_evasion_epsilon: ASR against ε per attack, white-box and transfer."""
    from fedaudit.attacks.evasion.figures import epsilon_figure

    epsilon_figure(pd.read_csv(job.input.rates), job.params.scenario, job.output[0])
    log.info("ε sweep figure of %s: %s", job.params.scenario, job.output[0])


def figure_alpha(job: Job, log: logging.Logger) -> None:
    """Rule figure_evasion_alpha: ASR against the step α at the primary ε."""
    from fedaudit.attacks.evasion.figures import alpha_figure

    alpha_figure(pd.read_csv(job.input.rates), job.params.scenario, job.output[0])
    log.info("α sweep figure of %s: %s", job.params.scenario, job.output[0])


def figure_example(job: Job, log: logging.Logger) -> None:
    """Rule figure_evasion_example: clean / perturbed MR, the perturbation ×10, the sCT change."""
    from fedaudit.attacks.evasion.figures import example_figure

    arrays = load_npz(job.input.example)
    example_figure(arrays, job.params.scenario, job.output[0])
    log.info("example figure of %s: %s", job.params.scenario, job.output[0])
