# Evaluation in HU (paper 000, "Evaluation Metrics"; SynthRAD2023 definitions): sCT per test
# patient, per-patient MAE/PSNR/SSIM, per-center summaries and paired Wilcoxon tests, with the
# constant predictor beside every scenario.


rule evaluate:
    """sCT for every test patient (A-D test splits, all of E) and its metrics."""
    input:
        model=rules.train.output.model,
        volumes=[f for c, p in test_patients() for f in preprocessed(c, p)],
        qc_flags=QC_FLAGS,
    output:
        metrics=ensure("results/eval/{scenario}/metrics.csv", non_empty=True),
        sct=sct_files("{scenario}"),
    log:
        f"{LOGS}/evaluate/{{scenario}}.log",
    params:
        patients=[[c, p] for c, p in test_patients()],
        fusion=config["evaluate"]["fusion"],
        batch_size=config["evaluate"]["batch_size"],
        amp=config["train"]["amp"],
    threads: EXECUTION["evaluate"]["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/evaluate.py"


rule constant_predictor:
    """The trivial reference: the training patients' median HU everywhere in the head."""
    input:
        volumes=[f for c, p in TRAIN_SPLIT for f in preprocessed(c, p)]
        + [f for c, p in test_patients() for f in preprocessed(c, p)],
        qc_flags=QC_FLAGS,
    output:
        value=CONSTANT_VALUE,
        metrics=CONSTANT_METRICS,
    log:
        f"{LOGS}/evaluate/constant_predictor.log",
    params:
        train_patients=[[c, p] for c, p in TRAIN_SPLIT],
        patients=[[c, p] for c, p in test_patients()],
    threads: 1
    resources:
        # one volume at a time, plus the head voxels' HU of all (~a third of each cube, float32)
        mem_mb=2000 + 4 * config["preprocess"]["cube"]["size"] ** 3 * len(TRAIN_SPLIT) // 2**20,
        runtime=10,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/constant_predictor.py"


rule eval_summary:
    """Per-center mean and sd of every scenario and the constant predictor; Wilcoxon tests."""
    input:
        scenarios=expand(rules.evaluate.output.metrics, scenario=EVALUATED),
        constant=CONSTANT_METRICS,
    output:
        summary="results/eval/summary.csv",
        wilcoxon="results/eval/wilcoxon.csv",
    log:
        f"{LOGS}/eval_summary/eval_summary.log",
    params:
        references={
            s.name: s.reference
            for s in SCENARIOS.values()
            if s.reference in EVALUATED and s.name in EVALUATED
        },
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/eval_summary.py"


rule evaluate_all:
    input:
        rules.eval_summary.output,
