"""Rule train: federated training of one scenario (resumes from its checkpoints)."""

from _common import logged

with logged(snakemake) as log:
    from fedaudit.federation.plan import plan_from_config
    from fedaudit.federation.run import train_federation
    from fedaudit.io import read_json
    from fedaudit.scenarios import Scenario

    splits = {}
    for path in snakemake.input.splits:
        rec = read_json(path)
        splits[rec["center"]] = rec
    scenario = Scenario(**snakemake.params.scenario)
    plan = plan_from_config(snakemake.config, scenario, splits, "results/preprocessed",
                            snakemake.params.out_dir)
    result = train_federation(plan)
    hist = result["history"]
    last = hist[hist["round"] == hist["round"].max()].set_index("center")
    val = last["val_mae"].round(1).to_dict() if "val_mae" in last else {}
    log.info("trained %d round(s) in %.1f s (%.2f s/round); final val MAE per center: %s",
             result["rounds_trained"], result["seconds"],
             result["seconds"] / max(result["rounds_trained"], 1), val)
