# DLG gradient inversion (paper 000 "Gradient Inversion", Fig. 2) by the honest-but-curious
# server on its log: per training center and optimiser, the three networks of
# fedaudit.attacks.dlg.inversion.run_dlg; one summary table, the table and the evolution figures.

DLG = config["attacks"]["dlg"]
# What every DLG job reads (plus its own optimiser's settings): not which scenarios or optimisers
# are attacked, so adding one re-runs none of the others.
DLG_SETTINGS = {
    k: v for k, v in DLG.items() if k not in ("enabled", "scenarios", "optimizers", "adam", "lbfgs")
}
DLG_SCENARIOS = DLG["scenarios"] if DLG["enabled"] else []
ATTACKED["dlg"] = DLG_SCENARIOS


wildcard_constraints:
    optimizer=any_of(DLG["optimizers"]),
    train_center=any_of(TRAIN_CENTERS),


# small jobs run locally, not queued on a cluster
localrules:
    dlg_summary,
    table_inversion,
    figure_dlg,


rule dlg:
    """DLG against one center's shared gradient, with the BN-free positive control."""
    input:
        server_log=rules.train.output.server_log,
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
        attack="dlg",
        step="attack",
        train_folders=lambda wc: [
            f"results/preprocessed/{wc.train_center}/{p}" for p in SPLITS[wc.train_center]["train"]
        ],
        dlg=lambda wc: {**DLG_SETTINGS, wc.optimizer: DLG[wc.optimizer]},
        model_base=config["train"]["model"]["base"],
        loss=config["train"]["loss"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=3000,
        # three networks per job: ~65 s per 600 iterations on one demo core
        runtime=lambda wc: max(10, DLG["iterations"] // 50),
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule dlg_summary:
    """All DLG results in one table (the evolution montages are rule figure_dlg)."""
    input:
        metrics=expand(
            rules.dlg.output.metrics,
            scenario=DLG_SCENARIOS,
            train_center=TRAIN_CENTERS,
            optimizer=DLG["optimizers"],
        ),
    output:
        table="results/attacks/dlg/dlg.csv",
    log:
        f"{LOGS}/attacks/dlg_summary.log",
    params:
        attack="dlg",
        step="summary",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule table_inversion:
    """DLG SSIM / PSNR per center and optimiser, with the positive control beside it."""
    input:
        dlg=rules.dlg_summary.output.table,
    output:
        **table_outputs("inversion", "report_captions/table.rst"),
    log:
        f"{LOGS}/report/table_inversion.log",
    params:
        table="inversion",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        TABLE_SCRIPT


rule figure_dlg:
    """Paper 000 Fig. 2: DLG reconstruction evolution per center for one optimiser."""

    # attacks env: its step lives in DLG's steps module beside the attack (torch)
    input:
        results=lambda wc: expand(
            rules.dlg.output.result,
            scenario=wc.scenario,
            train_center=TRAIN_CENTERS,
            optimizer=wc.optimizer,
        ),
    output:
        report(
            f"{FIGURES}/dlg_evolution_{{scenario}}_{{optimizer}}.png",
            caption="report_captions/figure.rst",
            category="Privacy",
            subcategory="Gradient inversion (DLG)",
            labels={"scenario": "{scenario}", "optimizer": "{optimizer}"},
        ),
    log:
        f"{LOGS}/report/figure_dlg/{{scenario}}_{{optimizer}}.log",
    params:
        attack="dlg",
        step="figure",
        centers=TRAIN_CENTERS,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


if DLG_SCENARIOS:
    register_outputs(
        outputs=rules.dlg_summary.output,
        tables=["inversion"],
        figures=expand(
            rules.figure_dlg.output[0], scenario=DLG_SCENARIOS, optimizer=DLG["optimizers"]
        ),
    )
