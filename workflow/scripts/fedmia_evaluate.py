"""Rule fedmia_evaluate: FedMIA scores per target center, ROC metrics against the splits."""

from _common import logged

with logged(snakemake) as log:
    import numpy as np

    from fedaudit.attacks.fedmia_run import evaluate_scenario, load_measurement
    from fedaudit.preprocess.outliers import read_excluded

    p = snakemake.params
    # A QC-excluded patient was never trained on: it is neither a member nor a fair non-member.
    dropped = {pid for _, pid in read_excluded(snakemake.input.qc_flags)}
    truth = {kind: {t: [pid for pid in pids if pid not in dropped] for t, pids in sets.items()}
             for kind, sets in p.truth.items()}
    if dropped:
        log.info("left out (QC-excluded): %s", sorted(dropped))
    metrics, scores, curves = evaluate_scenario(
        load_measurement(snakemake.input.similarity), members=truth["members"],
        nonmembers=truth["nonmembers"], seed=p.seed, scenario=snakemake.wildcards.scenario,
        secagg=p.secagg)
    metrics.to_csv(snakemake.output.metrics, index=False)
    scores.to_csv(snakemake.output.scores, index=False)
    np.savez(snakemake.output.roc, **curves)
    auc = metrics[(metrics.metric == "auc") & (metrics.score == "fedmia")]
    log.info("FedMIA AUC (slice / patient level): %s",
             auc.pivot_table(index="target", columns="level", values="value").round(3)
             .to_dict("index"))
