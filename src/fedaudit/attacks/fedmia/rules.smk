# FedMIA membership inference (paper 000 "Membership Inference", Fig. 3) by the
# honest-but-curious server on its log, with and without SecAgg+, and the memorising positive
# control: measure (attacker side) -> evaluate (evaluator side) -> summary, table, ROC figure.

from fedaudit.attacks.fedmia.rounds import rounds_read as fedmia_rounds_read  # noqa: E402

FEDMIA = config["attacks"]["fedmia"]
FEDMIA_SCENARIOS = FEDMIA["scenarios"] if FEDMIA["enabled"] else []
# The memorising positive control is attacked whenever FedMIA runs and it is configured.
if FEDMIA_SCENARIOS and MEMBERSHIP_CONTROL and MEMBERSHIP_CONTROL not in FEDMIA_SCENARIOS:
    FEDMIA_SCENARIOS = [*FEDMIA_SCENARIOS, MEMBERSHIP_CONTROL]
# every seed of the replicated federations (config seeds): the verdict reads across them
FEDMIA_SCENARIOS = with_replicas(FEDMIA_SCENARIOS)
ATTACKED["fedmia"] = FEDMIA_SCENARIOS
# The attacker's candidate patients: every patient of every center (it does not know which are
# members; the evaluator does). Validation patients were never trained on: they are same-center
# non-members like the test patients.
FEDMIA_PATIENTS = [
    (c, p) for c in STUDY.centers() for k in ("train", "val", "test") for p in SPLITS[c][k]
]


# small jobs run locally, not queued on a cluster
localrules:
    fedmia_summary,
    table_membership,
    figure_fedmia_roc,


rule fedmia_measure:
    """The attacker's measurement: cos(-gradient, client update) per candidate slice and client."""
    input:
        server_log=rules.train.output.server_log,
        volumes=[f for c, p in FEDMIA_PATIENTS for f in preprocessed(c, p)],
    output:
        "results/attacks/fedmia/{scenario}/similarity.npz",
    log:
        f"{LOGS}/attacks/fedmia_measure/{{scenario}}.log",
    params:
        attack="fedmia",
        step="measure",
        patients=[[c, f"results/preprocessed/{c}/{p}"] for c, p in FEDMIA_PATIENTS],
        # the audited federations' configured rounds; every round the control logs
        # (fedaudit.attacks.fedmia.rounds)
        rounds=lambda wc: fedmia_rounds_read(
            FEDMIA["rounds"],
            control=SCENARIOS[wc.scenario].control is not None,
            log_rounds=scenario_train(wc.scenario)["server_log"]["rounds"],
        ),
        per_orientation=FEDMIA["slices_per_orientation"],
        units=FEDMIA["units"],
        batch_size=FEDMIA["batch_size"],
        chunk_size=FEDMIA["chunk_size"],
        model_base=config["train"]["model"]["base"],
        loss=config["train"]["loss"],
    threads: EXECUTION["attacks"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule fedmia_evaluate:
    """Score every target center; AUC with patient CIs against same-center non-members."""
    input:
        similarity=rules.fedmia_measure.output[0],
        qc_flags=QC_FLAGS,
        splits=expand(rules.splits.output[0], center=STUDY.centers()),
    output:
        metrics="results/attacks/fedmia/{scenario}/metrics.csv",
        scores="results/attacks/fedmia/{scenario}/scores.csv",
        roc="results/attacks/fedmia/{scenario}/roc.npz",
    log:
        f"{LOGS}/attacks/fedmia_evaluate/{{scenario}}.log",
    params:
        attack="fedmia",
        step="evaluate",
        max_train_patients=lambda wc: scenario_train(wc.scenario)["max_train_patients"],
        seed=config["seed"],
        secagg=lambda wc: SCENARIOS[wc.scenario].secagg,
        control=lambda wc: SCENARIOS[wc.scenario].control is not None,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule fedmia_summary:
    """All FedMIA results in one table (the ROC figure is rule figure_fedmia_roc)."""
    input:
        metrics=expand(rules.fedmia_evaluate.output.metrics, scenario=FEDMIA_SCENARIOS),
    output:
        table="results/attacks/fedmia/fedmia.csv",
    log:
        f"{LOGS}/attacks/fedmia_summary.log",
    params:
        attack="fedmia",
        step="summary",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule table_membership:
    """FedMIA patient-level AUC with CIs against same-center non-members, per server view."""
    input:
        fedmia=rules.fedmia_summary.output.table,
    output:
        **table_outputs("membership", "report_captions/table.rst"),
    log:
        f"{LOGS}/report/table_membership.log",
    params:
        table="membership",
        # replica -> [federation, seed] (config seeds): the rows across seeds
        replicas={
            r: [SCENARIOS[r].replica_of, SCENARIOS[r].seed]
            for r in FEDMIA_SCENARIOS
            if SCENARIOS[r].replica_of is not None
        },
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        TABLE_SCRIPT


rule figure_fedmia_roc:
    """Paper 000 Fig. 3: pooled FedMIA ROC curves, membership beside center inference."""
    input:
        table=rules.fedmia_summary.output.table,
        roc=expand(rules.fedmia_evaluate.output.roc, scenario=FEDMIA_SCENARIOS),
    output:
        report(
            f"{FIGURES}/fedmia_roc.png",
            caption="report_captions/figure.rst",
            category="Privacy",
            subcategory="Membership inference (FedMIA)",
            labels={"figure": "ROC curves"},
        ),
    log:
        f"{LOGS}/report/figure_fedmia_roc.log",
    params:
        attack="fedmia",
        step="roc_figure",
        scenarios=FEDMIA_SCENARIOS,
        unit=FEDMIA["units"][0],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


if FEDMIA_SCENARIOS:
    register_outputs(
        outputs=rules.fedmia_summary.output,
        tables=["membership"],
        figures=rules.figure_fedmia_roc.output,
    )
