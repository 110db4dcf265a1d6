# The toy loss-threshold attack (a test plugin): one job per attacked scenario on its final
# model, one table.

LOSS_THRESHOLD = config["attacks"]["loss_threshold"]
LOSS_SCENARIOS = LOSS_THRESHOLD["scenarios"] if LOSS_THRESHOLD["enabled"] else []
ATTACKED["loss_threshold"] = LOSS_SCENARIOS
LOSS_CANDIDATES = [
    (c, p) for c in TRAIN_CENTERS for k in ("train", "val", "test") for p in SPLITS[c][k]
]


rule loss_threshold:
    """Membership by loss threshold on one scenario's final model."""
    input:
        model=rules.train.output.model,
        volumes=[f for c, p in LOSS_CANDIDATES for f in preprocessed(c, p)],
        splits=expand(rules.splits.output[0], center=TRAIN_CENTERS),
    output:
        "results/attacks/loss_threshold/{scenario}.csv",
    log:
        f"{LOGS}/attacks/loss_threshold/{{scenario}}.log",
    params:
        attack="loss_threshold",
        step="attack",
        candidates=[[c, f"results/preprocessed/{c}/{p}"] for c, p in LOSS_CANDIDATES],
        slices=LOSS_THRESHOLD["slices"],
    threads: 1
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule table_loss_membership:
    """The toy attack's table."""
    input:
        scores=expand(rules.loss_threshold.output[0], scenario=LOSS_SCENARIOS),
    output:
        **table_outputs("loss_membership", "report_captions/table.rst"),
    log:
        f"{LOGS}/report/table_loss_membership.log",
    params:
        table="loss_membership",
    threads: 1
    conda:
        CONDA_ENVS["report"]
    script:
        TABLE_SCRIPT


if LOSS_SCENARIOS:
    register_outputs(
        outputs=expand(rules.loss_threshold.output[0], scenario=LOSS_SCENARIOS),
        tables=["loss_membership"],
    )
