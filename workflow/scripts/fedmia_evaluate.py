"""Rule fedmia_evaluate: FedMIA scores per target center, AUC with patient CIs against the truth."""

from _common import logged

with logged(snakemake) as log:
    import numpy as np

    from fedaudit.attacks.fedmia_run import evaluate_scenario, load_measurement, membership_truth
    from fedaudit.io import read_json
    from fedaudit.preprocess.outliers import read_excluded

    p = snakemake.params
    records = {rec["center"]: rec for rec in map(read_json, snakemake.input.splits)}
    # A QC-excluded patient was never trained on: it is neither a member nor a fair non-member.
    excluded = read_excluded(snakemake.input.qc_flags)
    if excluded:
        log.info("left out (QC-excluded): %s", sorted(excluded))
    truth = membership_truth(records, excluded=excluded,
                             max_train_patients=p.max_train_patients)
    for target, t in truth["targets"].items():
        log.info("target %s: members %s, same-center non-members %s", target, t["members"],
                 t["held_out"])
    metrics, scores, curves = evaluate_scenario(
        load_measurement(snakemake.input.similarity), truth, seed=p.seed,
        scenario=snakemake.wildcards.scenario, secagg=p.secagg, control=p.control)
    metrics.to_csv(snakemake.output.metrics, index=False)
    scores.to_csv(snakemake.output.scores, index=False)
    np.savez(snakemake.output.roc, **curves)
    main = metrics[(metrics.test == "membership") & (metrics.level == "patient")
                   & (metrics.target == "all")]
    for r in main.itertuples():
        log.info("%s/%s/%s pooled patient-level AUC %.3f (95%% CI %.3f-%.3f, p %.3f; %d vs %d "
                 "patients)", r.view, r.score, r.unit, r.auc, r.ci_low, r.ci_high, r.p_value,
                 r.n_member_patients, r.n_nonmember_patients)
