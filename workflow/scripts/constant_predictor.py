"""Rule constant_predictor: the trivial reference (median training HU everywhere in the head),
scored on the test patients like a scenario."""

from _common import logged

with logged(snakemake) as log:
    from fedaudit.evaluation.run import evaluate_constant
    from fedaudit.io import write_json
    from fedaudit.preprocess.outliers import read_excluded, read_failed

    p = snakemake.params
    excluded = read_excluded(snakemake.input.qc_flags)
    kept = [pair for pair in map(tuple, p.train_patients) if pair not in excluded]
    value, table = evaluate_constant(
        train_patients=kept, patients=[tuple(x) for x in p.patients],
        preprocessed_root="results/preprocessed", metrics_path=snakemake.output.metrics,
        excluded=excluded, failed=read_failed(snakemake.input.qc_flags))
    write_json({"value_hu": value, "training_patients": len(kept),
                "definition": "median in-mask HU of the training patients, pooled"},
               snakemake.output.value)
    log.info("per-center MAE of the constant %.1f HU: %s", value,
             table[~table["excluded"]].groupby("center")["mae"].mean().round(1).to_dict())
