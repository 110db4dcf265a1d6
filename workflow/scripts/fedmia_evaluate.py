"""Rule fedmia_evaluate: FedMIA scores per target center, ROC metrics against the splits."""

from _common import logged

with logged(snakemake) as log:
    import numpy as np

    from fedaudit.attacks.fedmia_run import evaluate_scenario, load_measurement

    p = snakemake.params
    metrics, scores, curves = evaluate_scenario(
        load_measurement(snakemake.input.similarity), members=p.truth["members"],
        nonmembers=p.truth["nonmembers"], seed=p.seed, scenario=snakemake.wildcards.scenario,
        secagg=p.secagg)
    metrics.to_csv(snakemake.output.metrics, index=False)
    scores.to_csv(snakemake.output.scores, index=False)
    np.savez(snakemake.output.roc, **curves)
    auc = metrics[(metrics.metric == "auc") & (metrics.score == "fedmia")]
    log.info("FedMIA AUC (slice / patient level): %s",
             auc.pivot_table(index="target", columns="level", values="value").round(3)
             .to_dict("index"))
