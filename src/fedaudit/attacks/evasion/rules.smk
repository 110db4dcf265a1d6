# Test-time evasion by a malicious client (paper 004; fedaudit.attacks.evasion): per attacked
# scenario (baseline, FedMedian and the update-noise grid) one job crafts FGSM / BIM / PGD on the
# attacker's test slices against its own last-round local model and scores them on every model;
# one summary, three tables (paper 004 Table I, transfer, DP comparison) and three figures.

EVASION = config["attacks"]["evasion"]
# null = the first training center; the config check has made sure a named one trains
EVASION_ATTACKER = EVASION["attacker"] or TRAIN_CENTERS[0]
# paper 004's adversary attacks its own test data: without a test patient nothing is planned
EVASION_SCENARIOS = (
    EVASION["scenarios"] if EVASION["enabled"] and SPLITS[EVASION_ATTACKER]["test"] else []
)
if EVASION["enabled"] and not SPLITS[EVASION_ATTACKER]["test"]:
    logger.warning(
        f"attacks.evasion: attacker {EVASION_ATTACKER} has no test patient; the evasion "
        "attack is not run (give the center more patients or name another attacker)"
    )
ATTACKED["evasion"] = EVASION_SCENARIOS
EVASION_DIR = "results/attacks/evasion"
# What the attack jobs read: every setting but the scenario list and the success threshold
# (applied by the summary, so changing it re-runs no attack), with the attacker resolved.
EVASION_JOB = {
    **{k: v for k, v in EVASION.items() if k not in ("enabled", "scenarios", "threshold_hu")},
    "attacker": EVASION_ATTACKER,
}
# the scenario the figures show: baseline when attacked (the name only fills the paths of
# rules that are not planned when nothing is attacked)
EVASION_MAIN = (
    "baseline" if "baseline" in EVASION_SCENARIOS else (EVASION_SCENARIOS or ["baseline"])[0]
)


# small jobs run locally, not queued on a cluster
localrules:
    evasion_summary,
    table_evasion,
    table_evasion_transfer,
    figure_evasion_epsilon,
    figure_evasion_alpha,
    figure_evasion_example,


rule evasion:
    """Craft on the attacker's own local model, score on it, the global and every other client."""
    input:
        server_log=rules.train.output.server_log,
        model=rules.train.output.model,
        # the attacker's test patients, and every client's training data: a local model the
        # server log does not hold (update noise, SecAgg+) is recomputed by its client's code
        test=[
            f for p in SPLITS[EVASION_ATTACKER]["test"] for f in preprocessed(EVASION_ATTACKER, p)
        ],
        volumes=training_volumes,
        splits=expand(rules.splits.output[0], center=TRAIN_CENTERS),
        qc_flags=QC_FLAGS,
        # the constant predictor: a model whose clean MAE is not below it is not attacked
        constant=CONSTANT_VALUE,
    output:
        slices=f"{EVASION_DIR}/{{scenario}}/slices.csv",
        example=f"{EVASION_DIR}/{{scenario}}/example.npz",
        meta=f"{EVASION_DIR}/{{scenario}}/models.json",
    log:
        f"{LOGS}/attacks/evasion/{{scenario}}.log",
    params:
        attack="evasion",
        step="attack",
        evasion=EVASION_JOB,
        test_folders=split_folders("test", [EVASION_ATTACKER])[EVASION_ATTACKER],
        scenario=lambda wc: SCENARIOS[wc.scenario].as_dict(),
        train=lambda wc: scenario_train(wc.scenario),
        model_base=config["train"]["model"]["base"],
        seed=config["seed"],
        centers=TRAIN_CENTERS,
    threads: EXECUTION["attacks"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule evasion_summary:
    """Every scenario's rows, the rates at the success threshold, the models' provenance."""
    input:
        slices=expand(rules.evasion.output.slices, scenario=EVASION_SCENARIOS),
        meta=expand(rules.evasion.output.meta, scenario=EVASION_SCENARIOS),
    output:
        slices=f"{EVASION_DIR}/evasion.csv",
        rates=f"{EVASION_DIR}/rates.csv",
        models=f"{EVASION_DIR}/models.csv",
    log:
        f"{LOGS}/attacks/evasion_summary.log",
    params:
        attack="evasion",
        step="summary",
        threshold_hu=EVASION["threshold_hu"],
        settings=EVASION_JOB,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule table_evasion:
    """Paper 004 Table I's layout: attack x steps, clean MAE, white-box ASR, AASR, time."""
    input:
        rates=rules.evasion_summary.output.rates,
        models=rules.evasion_summary.output.models,
    output:
        **table_outputs("evasion", "report_captions/table.rst"),
    log:
        f"{LOGS}/report/table_evasion.log",
    params:
        table="evasion",
        threshold_hu=EVASION["threshold_hu"],
        targeted=EVASION["targeted"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        TABLE_SCRIPT


rule table_evasion_transfer:
    """Per attack at the primary setting: every model's MAE, ASR and transfer rate."""
    input:
        rates=rules.evasion_summary.output.rates,
        models=rules.evasion_summary.output.models,
    output:
        **table_outputs("evasion_transfer", "report_captions/transfer.rst"),
    log:
        f"{LOGS}/report/table_evasion_transfer.log",
    params:
        table="evasion_transfer",
        scenario=EVASION_MAIN,
        threshold_hu=EVASION["threshold_hu"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        TABLE_SCRIPT


rule figure_evasion_epsilon:
    """ASR against ε per attack: the attacker's own model, the global model, the victims."""
    input:
        rates=rules.evasion_summary.output.rates,
    output:
        report(
            f"{FIGURES}/evasion_epsilon.png",
            caption="report_captions/epsilon.rst",
            category="Integrity",
            subcategory="Test-time evasion (paper 004)",
        ),
    log:
        f"{LOGS}/report/figure_evasion_epsilon.log",
    params:
        attack="evasion",
        step="figure_epsilon",
        scenario=EVASION_MAIN,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    # attacks env: its step lives in the attack's steps module (torch imported inside the attack)
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule figure_evasion_alpha:
    """ASR against the step α of BIM and PGD at the primary ε."""
    input:
        rates=rules.evasion_summary.output.rates,
    output:
        report(
            f"{FIGURES}/evasion_alpha.png",
            caption="report_captions/alpha.rst",
            category="Integrity",
            subcategory="Test-time evasion (paper 004)",
        ),
    log:
        f"{LOGS}/report/figure_evasion_alpha.log",
    params:
        attack="evasion",
        step="figure_alpha",
        scenario=EVASION_MAIN,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule figure_evasion_example:
    """Clean and perturbed MR, the perturbation x10 and the change of the sCT."""
    input:
        example=expand(rules.evasion.output.example, scenario=EVASION_MAIN)[0],
    output:
        report(
            f"{FIGURES}/evasion_example.png",
            caption="report_captions/example.rst",
            category="Integrity",
            subcategory="Test-time evasion (paper 004)",
        ),
    log:
        f"{LOGS}/report/figure_evasion_example.log",
    params:
        attack="evasion",
        step="figure_example",
        scenario=EVASION_MAIN,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


if EVASION_SCENARIOS:
    register_outputs(
        outputs=rules.evasion_summary.output,
        tables=["evasion", "evasion_transfer"],
        figures=[
            *rules.figure_evasion_epsilon.output,
            *rules.figure_evasion_alpha.output,
            *rules.figure_evasion_example.output,
        ],
    )
