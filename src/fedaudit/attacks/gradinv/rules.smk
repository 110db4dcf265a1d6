# The gradient-inversion suite of paper 003 (fedaudit.attacks.gradinv): per attacked scenario
# (baseline and the update-noise grid) the slice classifier federation, then per target (unet,
# classifier) and method (dlg, cpl, idlg, inverting_gradients) one attack job over every
# training center; one summary and three tables (suite, paper 003 Table II, privacy-utility;
# the privacy-utility figure is a comparison: workflow/rules/comparisons.smk).

from fedaudit.defenses.budgets import reference_scenario  # noqa: E402

GRADINV = config["attacks"]["gradinv"]
GRADINV_SCENARIOS = GRADINV["scenarios"] if GRADINV["enabled"] else []
ATTACKED["gradinv"] = GRADINV_SCENARIOS
GRADINV_DIR = "results/attacks/gradinv"
GRADINV_TARGETS = ["unet", "classifier"]
# What each target's jobs read of the suite's settings (not the scenario list or the methods,
# and each target not the other's sizes), so a change re-runs exactly the jobs it affects.
_GRADINV_COMMON = ("round", "sct_target", "success_ssim")
GRADINV_READS = {
    "unet": {
        **{k: GRADINV[k] for k in (*_GRADINV_COMMON, "networks")},
        "slices": {"translation": GRADINV["slices"]["translation"]},
        "evaluations": {"translation": GRADINV["evaluations"]["translation"]},
    },
    "classifier": {
        **{k: GRADINV[k] for k in _GRADINV_COMMON},
        "slices": {"classification": GRADINV["slices"]["classification"]},
        "evaluations": {"classification": GRADINV["evaluations"]["classification"]},
        "classifier": GRADINV["classifier"],
    },
}


# under noise, the UNet is attacked only where the same method recovers a slice of this
# scenario's UNet (fedaudit.attacks.gradinv.steps.attack)
GRADINV_REFERENCE = {
    s: reference_scenario(
        s,
        GRADINV_SCENARIOS,
        {n: SCENARIOS[n].defenses for n in GRADINV_SCENARIOS},
        config["plugins"],
    )
    for s in GRADINV_SCENARIOS
}


wildcard_constraints:
    gradinv_target=any_of(GRADINV_TARGETS),
    gradinv_method=any_of(GRADINV["methods"]),


# small jobs run locally, not queued on a cluster
localrules:
    gradinv_summary,
    table_inversion_suite,
    table_inversion_classifier,


rule gradinv_classifier:
    """Paper 003's target: the slice classifier federation of one scenario (its update noise on)."""
    input:
        volumes=[
            f
            for c in STUDY.centers()
            for s in ("train", "val", "test")
            for p in SPLITS[c][s]
            for f in preprocessed(c, p)
            if c in TRAIN_CENTERS or s == "test"
        ],
        qc_flags=QC_FLAGS,
    output:
        folder=directory(f"{GRADINV_DIR}/classifier/{{scenario}}"),
    log:
        f"{LOGS}/attacks/gradinv/classifier_{{scenario}}.log",
    params:
        attack="gradinv",
        step="train_classifier",
        train_folders=split_folders("train", TRAIN_CENTERS),
        val_folders=split_folders("val", TRAIN_CENTERS),
        test_folders=split_folders("test", STUDY.centers()),
        classifier={k: v for k, v in GRADINV["classifier"].items() if k != "attacked_round"},
        defenses=lambda wc: update_noise(wc.scenario),
        seed=config["seed"],
        # a DP-SGD scenario's clients find their local training through the catalog
        plugins=tuple(config["plugins"]),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    # attacks env: Flower and torch as the train env, plus what the suite's steps module reads
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule gradinv:
    """One method against one target (UNet + control, or the classifier), every center."""
    input:
        volumes=[f for c, p in TRAIN_SPLIT for f in preprocessed(c, p)],
        qc_flags=QC_FLAGS,
        # the UNet's attacks read the server log, the classifier's their federation
        target=lambda wc: (
            expand(rules.train.output.server_log, scenario=wc.scenario)[0]
            if wc.gradinv_target == "unet"
            else expand(rules.gradinv_classifier.output.folder, scenario=wc.scenario)[0]
        ),
        # under noise, the UNet is attacked only where the same method recovers a slice of the
        # noise-free reference's UNet (fedaudit.attacks.gradinv.steps.attack)
        reference=lambda wc: (
            f"{GRADINV_DIR}/{GRADINV_REFERENCE[wc.scenario]}/unet_{wc.gradinv_method}.json"
            if wc.gradinv_target == "unet" and GRADINV_REFERENCE.get(wc.scenario) is not None
            else []
        ),
    output:
        metrics=f"{GRADINV_DIR}/{{scenario}}/{{gradinv_target}}_{{gradinv_method}}.json",
        arrays=f"{GRADINV_DIR}/{{scenario}}/{{gradinv_target}}_{{gradinv_method}}.npz",
    log:
        f"{LOGS}/attacks/gradinv/{{scenario}}_{{gradinv_target}}_{{gradinv_method}}.log",
    params:
        attack="gradinv",
        step="attack",
        train_folders=split_folders("train", TRAIN_CENTERS),
        gradinv=lambda wc: GRADINV_READS[wc.gradinv_target],
        # a method's config section, unless it has jobs of its own (DLG, paper 000 Fig. 2)
        # whose settings those jobs read: the suite then runs it on the suite's settings alone
        method_settings=lambda wc: (
            {}
            if CATALOG.attacks[wc.gradinv_method].rules.is_file()
            else config["attacks"][wc.gradinv_method]
        ),
        defenses=lambda wc: update_noise(wc.scenario),
        model_base=config["train"]["model"]["base"],
        loss=config["train"]["loss"],
        seed=config["seed"],
        plugins=tuple(config["plugins"]),
    threads: 1
    resources:
        mem_mb=3000,
        runtime=lambda wc: 10 + GRADINV["evaluations"]["translation"] // 20,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule gradinv_summary:
    """Every attacked slice in one table; the classifier federations' accuracies."""
    input:
        metrics=expand(
            rules.gradinv.output.metrics,
            scenario=GRADINV_SCENARIOS,
            gradinv_target=GRADINV_TARGETS,
            gradinv_method=GRADINV["methods"],
        ),
        classifiers=expand(rules.gradinv_classifier.output.folder, scenario=GRADINV_SCENARIOS),
    output:
        table=f"{GRADINV_DIR}/gradinv.csv",
        classifier=f"{GRADINV_DIR}/classifier_accuracy.csv",
    log:
        f"{LOGS}/attacks/gradinv_summary.log",
    params:
        attack="gradinv",
        step="summary",
        classifier_scenarios=GRADINV_SCENARIOS,
        settings={k: v for k, v in GRADINV.items() if k != "enabled"},
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule table_inversion_suite:
    """CPL, DLG, iDLG and Inverting Gradients on the UNet, its control and the classifier."""
    input:
        gradinv=rules.gradinv_summary.output.table,
    output:
        **table_outputs("inversion_suite", "report_captions/suite.rst"),
    log:
        f"{LOGS}/report/table_inversion_suite.log",
    params:
        table="inversion_suite",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        TABLE_SCRIPT


rule table_inversion_classifier:
    """Paper 003 Table II's layout for the slice classifier."""
    input:
        gradinv=rules.gradinv_summary.output.table,
        classifier=rules.gradinv_summary.output.classifier,
    output:
        **table_outputs("inversion_classifier", "report_captions/classifier.rst"),
    log:
        f"{LOGS}/report/table_inversion_classifier.log",
    params:
        table="inversion_classifier",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        TABLE_SCRIPT


if GRADINV_SCENARIOS:
    register_outputs(
        outputs=rules.gradinv_summary.output,
        tables=["inversion_suite", "inversion_classifier"],
    )
