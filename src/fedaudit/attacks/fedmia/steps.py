"""FedMIA's rule steps (called by ``workflow/scripts/step.py`` through the catalog): ``measure``
(attacker side: the server log only), ``evaluate`` (evaluator side: the membership truth),
``summary`` and ``roc_figure`` (paper 000 Fig. 3)."""

from __future__ import annotations

import logging

import pandas as pd

from fedaudit.atomic import save_npz, write_csv
from fedaudit.catalog import Job
from fedaudit.io import read_json


def measure(job: Job, log: logging.Logger) -> None:
    """Rule fedmia_measure: the attacker's similarity matrices from one scenario's server log."""
    from fedaudit.attacks.fedmia.evaluation import measure as run_measure
    from fedaudit.attacks.fedmia.evaluation import save_measurement

    p = job.params
    m = run_measure(server_log=job.input.server_log, rounds=p.rounds,
                    patients=[tuple(x) for x in p.patients], model_base=p.model_base,
                    per_orientation=p.per_orientation, units=p.units, batch_size=p.batch_size,
                    loss=p.loss, chunk_size=p.chunk_size, device=job.device())
    save_measurement(job.output[0], m)
    log.info("views %s, units %s for clients %s in %.1f s", list(m["views"]),
             list(m["units"]), list(m["centers"]), m["seconds"])


def evaluate(job: Job, log: logging.Logger) -> None:
    """Rule fedmia_evaluate: scores per target center, AUC with patient CIs against the truth."""
    from fedaudit.attacks.fedmia.evaluation import (
        evaluate_scenario,
        load_measurement,
        membership_truth,
    )
    from fedaudit.preprocess.outliers import read_excluded

    p = job.params
    records = {rec["center"]: rec for rec in map(read_json, job.input.splits)}
    # A QC-excluded patient was never trained on: it is neither a member nor a fair non-member.
    excluded = read_excluded(job.input.qc_flags)
    if excluded:
        log.info("left out (QC-excluded): %s", sorted(excluded))
    truth = membership_truth(records, excluded=excluded,
                             max_train_patients=p.max_train_patients)
    for target, t in truth["targets"].items():
        log.info("target %s: members %s, same-center non-members %s", target, t["members"],
                 t["held_out"])
    metrics, scores, curves = evaluate_scenario(
        load_measurement(job.input.similarity), truth, seed=p.seed,
        scenario=job.wildcards.scenario, secagg=p.secagg, control=p.control)
    write_csv(metrics, job.output.metrics, index=False)
    write_csv(scores, job.output.scores, index=False)
    save_npz(job.output.roc, **curves)
    main = metrics[(metrics.test == "membership") & (metrics.level == "patient")
                   & (metrics.target == "all")]
    for r in main.itertuples():
        log.info("%s/%s/%s pooled patient-level AUC %.3f (95%% CI %.3f-%.3f, p %.3f; %d vs %d "
                 "patients)", r.view, r.score, r.unit, r.auc, r.ci_low, r.ci_high, r.p_value,
                 r.n_member_patients, r.n_nonmember_patients)


def summary(job: Job, log: logging.Logger) -> None:
    """Rule fedmia_summary: one table of every FedMIA result."""
    table = pd.concat([pd.read_csv(f) for f in job.input.metrics], ignore_index=True)
    write_csv(table, job.output.table, index=False)
    log.info("%d rows", len(table))


def roc_figure(job: Job, log: logging.Logger) -> None:
    """Rule figure_fedmia_roc: pooled ROC curves per scenario and server view (Fig. 3)."""
    from fedaudit.attacks.fedmia.figures import fedmia_roc_figure

    table = pd.read_csv(job.input.table)
    fedmia_roc_figure(dict(zip(job.params.scenarios, job.input.roc, strict=True)), table,
                      job.output[0], unit=job.params.unit)
    log.info("ROC figure %s", job.output[0])
