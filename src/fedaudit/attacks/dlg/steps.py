"""DLG's rule steps (called by ``workflow/scripts/step.py`` through the catalog): ``attack``
(one center's shared gradient against three networks), ``summary`` (one tidy table) and
``figure`` (paper 000 Fig. 2's evolution montage)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from fedaudit.atomic import write_csv
from fedaudit.attacks.dlg.inversion import NETWORKS, DLGConfig, run_dlg, save_result
from fedaudit.catalog import Job
from fedaudit.io import read_json, write_json
from fedaudit.preprocess.outliers import read_excluded
from fedaudit.runtime import derive_seed


def attack(job: Job, log: logging.Logger) -> None:
    """Rule dlg: DLG against one center's shared gradient: the UNet, the same UNet without
    BatchNorm (the positive control) and the MLP code check, one row each."""
    p, wc = job.params, job.wildcards
    # The client's private slice comes from data it trained on: not from a QC-excluded patient.
    excluded = read_excluded(job.input.qc_flags)
    train_folders = [f for f in p.train_folders if (wc.train_center, Path(f).name) not in excluded]
    opt = wc.optimizer
    spec = p.dlg[opt]
    # the optimiser's own section (adam: lr, step_size, gamma; lbfgs: lr, history_size), its
    # defaults filled by the schema
    cfg = DLGConfig(optimizer=opt, iterations=p.dlg["iterations"], snapshots=p.dlg["snapshots"],
                    target=p.dlg["target"], loss=p.loss, **spec)
    # One seed per center (not per optimiser or scenario): every optimiser and scenario attacks
    # the same private slice from the same initial dummy, so their results compare directly.
    outcome = run_dlg(server_log=job.input.server_log, round=p.dlg["round"],
                      train_folders=train_folders, model_base=p.model_base, cfg=cfg,
                      seed=derive_seed(p.seed, "dlg", wc.train_center), device=job.device(),
                      control_hidden=p.dlg["control_hidden"], batch_size=p.dlg["batch_size"],
                      log=log)
    save_result(job.output.result, outcome)
    rows = []
    for network in NETWORKS:
        res = outcome[network]
        rows.append({"scenario": wc.scenario, "center": wc.train_center, "optimizer": opt,
                     "network": network, "round": outcome["round"], "target": cfg.target,
                     "batch_size": p.dlg["batch_size"], "iterations": int(res.final_iteration),
                     # ssim_raw, psnr_raw, ssim_fit, psnr_fit, gain, offset
                     **outcome["quality"][network],
                     # loss[i] is the objective before update i+1: the last one evaluated
                     "last_matching_loss": float(res.loss[res.final_iteration - 1])
                     if res.final_iteration > 0 else float("nan"),
                     "seconds": res.seconds, "iterations_per_s": res.iterations_per_s,
                     "stopped_early": bool(res.stopped_early),
                     "slices": outcome["provenance"]})
        q = outcome["quality"][network]
        log.info("%s: in the mask, raw SSIM %.3f, PSNR %.2f dB; after the gain/offset fit "
                 "(gain %.3g, offset %.3g) SSIM %.3f, PSNR %.2f dB (%.1f it/s)", network,
                 q["ssim_raw"], q["psnr_raw"], q["gain"], q["offset"], q["ssim_fit"],
                 q["psnr_fit"], res.iterations_per_s)
    write_json({"results": rows}, job.output.metrics)


def summary(job: Job, log: logging.Logger) -> None:
    """Rule dlg_summary: one tidy table of every DLG result."""
    rows = [r for f in job.input.metrics for r in read_json(f)["results"]]
    wide = pd.DataFrame(rows).drop(columns=["slices"])
    keys = ["scenario", "center", "optimizer", "network", "round", "target", "batch_size"]
    tidy = wide.melt(id_vars=keys, var_name="metric", value_name="value")
    write_csv(tidy, job.output.table, index=False)
    for kind in ("raw", "fit"):
        log.info("DLG SSIM in the mask, %s:\n%s",
                 "as reconstructed" if kind == "raw" else "after the gain/offset fit",
                 wide.pivot_table(index=["scenario", "center"], columns=["optimizer", "network"],
                                  values=f"ssim_{kind}").round(3).to_string())


def figure(job: Job, log: logging.Logger) -> None:
    """Rule figure_dlg: the reconstruction evolution of one scenario and optimiser (Fig. 2)."""
    from fedaudit.attacks.dlg.figures import dlg_evolution_figure
    from fedaudit.attacks.dlg.report import OPTIMIZERS

    wc = job.wildcards
    results = dict(zip(job.params.centers, job.input.results, strict=True))
    dlg_evolution_figure(results, job.output[0],
                         f"DLG reconstruction, scenario {wc.scenario}, "
                         f"{OPTIMIZERS.get(wc.optimizer, wc.optimizer)}")
    log.info("evolution figure %s (%d centers)", job.output[0], len(results))
