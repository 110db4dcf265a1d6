"""Rule train: federated training of one scenario (resumes from its checkpoints)."""

from _common import logged

with logged(snakemake) as log:
    from fedaudit.federation.aggregation import trims_to_median
    from fedaudit.federation.plan import plan_from_config
    from fedaudit.federation.run import train_federation
    from fedaudit.io import read_json
    from fedaudit.preprocess.outliers import read_excluded
    from fedaudit.scenarios import Scenario

    p = snakemake.params
    records = {rec["center"]: rec for rec in map(read_json, snakemake.input.splits)}
    excluded = read_excluded(snakemake.input.qc_flags)
    # Execution settings come from the config, not from params: they change how the federation
    # is computed, not its result, so they must not trigger a re-run.
    plan = plan_from_config(p.train, Scenario.from_dict(p.scenario),
                            {c: records[c] for c in p.centers}, "results/preprocessed",
                            p.out_dir, seed=p.seed, excluded=excluded,
                            plugins=tuple(snakemake.config["plugins"]), code=p.code,
                            execution=snakemake.config["execution"]["train"])
    s = plan.scenario
    if s.aggregation == "trimmed_mean" and trims_to_median(len(plan.clients),
                                                           s.aggregation_params["beta"]):
        log.warning("trimmed_mean with %d clients and beta %g keeps only the middle value(s): "
                    "it is exactly FedMedian here", len(plan.clients),
                    s.aggregation_params["beta"])
    for c in plan.clients:
        log.info("client %s: %d training, %d validation patient(s)", c.center, len(c.train),
                 len(c.val))
    reference = read_json(snakemake.input.constant)["value_hu"]
    result = train_federation(plan, reference_hu=reference)
    hist = result["records"]  # the clients' own records: validation MAE under any defense
    last = hist[hist["round"] == hist["round"].max()].set_index("center")
    val = last["val_mae"].round(1).to_dict() if "val_mae" in last else {}
    log.info("trained %d round(s) in %.1f s (%.2f s/round); final val MAE per center: %s",
             result["rounds_trained"], result["seconds"],
             result["seconds"] / max(result["rounds_trained"], 1), val)
