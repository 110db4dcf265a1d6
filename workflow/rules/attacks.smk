# Privacy attacks of paper 000 by the honest-but-curious server, on what its log holds: DLG
# gradient inversion ("Gradient Inversion", Fig. 2) and FedMIA membership inference
# ("Membership Inference", Fig. 3), the latter with and without SecAgg+.

ATTACKS = config["attacks"]
FEDMIA = ATTACKS["fedmia"]
DLG = ATTACKS["dlg"]
# What every DLG job reads (plus its own optimiser's settings): not which scenarios or optimisers
# are attacked, so adding one re-runs none of the others.
DLG_SETTINGS = {
    k: v for k, v in DLG.items() if k not in ("enabled", "scenarios", "optimizers", "adam", "lbfgs")
}
FEDMIA_SCENARIOS = FEDMIA["scenarios"] if FEDMIA["enabled"] else []
# The memorising positive control is attacked whenever FedMIA runs and it is configured.
if FEDMIA_SCENARIOS and MEMBERSHIP_CONTROL and MEMBERSHIP_CONTROL not in FEDMIA_SCENARIOS:
    FEDMIA_SCENARIOS = [*FEDMIA_SCENARIOS, MEMBERSHIP_CONTROL]

DLG_SCENARIOS = DLG["scenarios"] if DLG["enabled"] else []


wildcard_constraints:
    optimizer=any_of(DLG["optimizers"]),
    train_center=any_of(TRAIN_CENTERS),


rule fedmia_measure:
    """The attacker's measurement: cos(-gradient, client update) per candidate slice and client."""
    input:
        model=rules.train.output.model,
        volumes=[f for c, p in fedmia_patients() for f in preprocessed(c, p)],
    output:
        "results/attacks/fedmia/{scenario}/similarity.npz",
    log:
        f"{LOGS}/attacks/fedmia_measure/{{scenario}}.log",
    params:
        server_log=lambda wc: f"results/train/{wc.scenario}/server_log",
        patients=[[c, f"results/preprocessed/{c}/{p}"] for c, p in fedmia_patients()],
        rounds=fedmia_rounds,
        per_orientation=FEDMIA["slices_per_orientation"],
        units=FEDMIA["units"],
        batch_size=FEDMIA["batch_size"],
        chunk_size=FEDMIA["chunk_size"],
        model_base=config["train"]["model"]["base"],
        loss=config["train"]["loss"],
        device=ATTACKS["device"],
    threads: ATTACKS["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/attacks.yaml"
    script:
        "../scripts/fedmia_measure.py"


rule fedmia_evaluate:
    """Score every target center; AUC with patient CIs against same-center non-members."""
    input:
        similarity=rules.fedmia_measure.output[0],
        qc_flags=QC_FLAGS,
        splits=expand("results/splits/{center}.json", center=STUDY.centers()),
    output:
        metrics="results/attacks/fedmia/{scenario}/metrics.csv",
        scores="results/attacks/fedmia/{scenario}/scores.csv",
        roc="results/attacks/fedmia/{scenario}/roc.npz",
    log:
        f"{LOGS}/attacks/fedmia_evaluate/{{scenario}}.log",
    params:
        max_train_patients=lambda wc: scenario_train(wc.scenario).get("max_train_patients"),
        seed=config["seed"],
        secagg=lambda wc: SCENARIOS[wc.scenario].secagg,
        control=lambda wc: SCENARIOS[wc.scenario].control is not None,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/attacks.yaml"
    script:
        "../scripts/fedmia_evaluate.py"


rule fedmia_summary:
    """All FedMIA results in one table (the ROC figure is rule figure_fedmia_roc)."""
    input:
        metrics=expand("results/attacks/fedmia/{scenario}/metrics.csv", scenario=FEDMIA_SCENARIOS),
    output:
        table="results/attacks/fedmia/fedmia.csv",
    log:
        f"{LOGS}/attacks/fedmia_summary.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/attacks.yaml"
    script:
        "../scripts/fedmia_summary.py"


rule dlg:
    """DLG against one center's shared gradient, with the BN-free positive control."""
    input:
        model=rules.train.output.model,
        volumes=lambda wc: [
            f for p in SPLITS[wc.train_center]["train"] for f in preprocessed(wc.train_center, p)
        ],
        qc_flags=QC_FLAGS,
    output:
        result="results/attacks/dlg/{scenario}/{train_center}_{optimizer}.npz",
        metrics="results/attacks/dlg/{scenario}/{train_center}_{optimizer}.json",
    log:
        f"{LOGS}/attacks/dlg/{{scenario}}/{{train_center}}_{{optimizer}}.log",
    params:
        server_log=lambda wc: f"results/train/{wc.scenario}/server_log",
        train_folders=lambda wc: [
            f"results/preprocessed/{wc.train_center}/{p}" for p in SPLITS[wc.train_center]["train"]
        ],
        dlg=lambda wc: {**DLG_SETTINGS, wc.optimizer: DLG[wc.optimizer]},
        model_base=config["train"]["model"]["base"],
        loss=config["train"]["loss"],
        seed=config["seed"],
        device=ATTACKS["device"],
    threads: 1
    resources:
        mem_mb=3000,
        # three networks per job: ~65 s per 600 iterations on one demo core
        runtime=lambda wc: max(10, DLG["iterations"] // 50),
    conda:
        "../envs/attacks.yaml"
    script:
        "../scripts/dlg.py"


rule dlg_summary:
    """All DLG results in one table (the evolution montages are rule figure_dlg)."""
    input:
        metrics=expand(
            "results/attacks/dlg/{scenario}/{train_center}_{optimizer}.json",
            scenario=DLG_SCENARIOS,
            train_center=TRAIN_CENTERS,
            optimizer=DLG["optimizers"],
        ),
    output:
        table="results/attacks/dlg/dlg.csv",
    log:
        f"{LOGS}/attacks/dlg_summary.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/attacks.yaml"
    script:
        "../scripts/dlg_summary.py"


rule attacks_all:
    input:
        rules.fedmia_summary.output if FEDMIA_SCENARIOS else [],
        rules.dlg_summary.output if DLG_SCENARIOS else [],
