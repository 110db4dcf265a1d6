"""Rule constant_predictor: the trivial reference (median training HU everywhere in the head),
scored on the test patients like a scenario."""

from _common import logged

with logged(snakemake) as log:
    from fedaudit.evaluation.run import evaluate_constant
    from fedaudit.io import read_json, write_json
    from fedaudit.preprocess.outliers import excluded_patients

    p = snakemake.params
    excluded = excluded_patients(read_json(snakemake.input.qc_flags))
    value, table = evaluate_constant(
        train_patients=[tuple(x) for x in p.train_patients],
        patients=[tuple(x) for x in p.patients], preprocessed_root="results/preprocessed",
        metrics_path=snakemake.output.metrics, excluded=excluded)
    n_train = sum((c, pid) not in excluded for c, pid in map(tuple, p.train_patients))
    write_json({"value_hu": value, "training_patients": n_train,
                "definition": "median in-mask HU of the training patients, pooled"},
               snakemake.output.value)
    log.info("per-center MAE of the constant %.1f HU: %s", value,
             table[~table["excluded"]].groupby("center")["mae"].mean().round(1).to_dict())
