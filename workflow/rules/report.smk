# Results people read (paper 000 Tables 2-3, Figs. 2-4): tables under results/tables/, figures
# under results/figures/, and the report's front page with the audit verdict. Every table and
# figure is marked for `snakemake --report`, with its caption in workflow/report/.

from fedaudit.report.selection import comparison_gamma, comparison_rows  # noqa: E402

TABLES = "results/tables"
FIGURES = "results/figures"
TABLE_FORMATS = ("csv", "md", "tex", "html")
POISONED = [s.name for s in SCENARIOS.values() if s.poison_center is not None]
SCENARIO_META = {name: s.as_dict() for name, s in SCENARIOS.items()}
# The FedAvg federation without / with SecAgg+ that Table 2 compares.
PLAIN = "baseline" if "baseline" in SCENARIOS else None
SECURE = "secagg" if "secagg" in SCENARIOS else None

SCT_GAMMA = comparison_gamma(SCENARIOS)
SCT_ROWS = comparison_rows(SCENARIOS, SCT_GAMMA) if SCT_GAMMA is not None else []
SCT_REFERENCE = SCT_ROWS[0][1] or SCT_ROWS[0][2] if SCT_ROWS else None
# Paper Fig. 4 shows an external-center patient; without an external center, any test patient.
SCT_CANDIDATES = [(c, p) for c, p in test_patients() if c in EXTERNAL_CENTERS] or test_patients()

TABLE_CATEGORY = {
    "quality": ("Training", "Synthesis quality"),
    "poisoning": ("Integrity", "Data poisoning"),
    "membership": ("Privacy", "Membership inference (FedMIA)"),
    "inversion": ("Privacy", "Gradient inversion (DLG)"),
}
# Only tables whose inputs this configuration produces.
TABLE_NAMES = [
    name
    for name, present in (
        ("quality", PLAIN is not None),
        ("poisoning", bool(POISONED)),
        ("membership", bool(FEDMIA_SCENARIOS)),
        ("inversion", bool(DLG_SCENARIOS)),
    )
    if present
]


rule table_quality:
    """Paper 000 Table 2: MAE, SSIM, PSNR per center without and with SecAgg+."""
    input:
        summary="results/eval/summary.csv",
    output:
        **table_outputs("quality"),
    log:
        f"{LOGS}/report/table_quality.log",
    params:
        kind="quality",
        plain=PLAIN,
        secure=SECURE,
        external=EXTERNAL_CENTERS,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/table.py"


rule table_poisoning:
    """Paper 000 Table 3: MAE per poisoned center x noise x evaluated center, per aggregation."""
    input:
        summary="results/eval/summary.csv",
        wilcoxon="results/eval/wilcoxon.csv",
    output:
        **table_outputs("poisoning"),
    log:
        f"{LOGS}/report/table_poisoning.log",
    params:
        kind="poisoning",
        scenarios=SCENARIO_META,
        external=EXTERNAL_CENTERS,
        trimmed_is_median=trims_to_median(len(TRAIN_CENTERS), config["train"]["trim_beta"]),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/table.py"


rule table_membership:
    """FedMIA patient-level AUC with CIs against same-center non-members, per server view."""
    input:
        fedmia="results/attacks/fedmia/fedmia.csv",
    output:
        **table_outputs("membership"),
    log:
        f"{LOGS}/report/table_membership.log",
    params:
        kind="membership",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/table.py"


rule table_inversion:
    """DLG SSIM / PSNR per center and optimiser, with the positive control beside it."""
    input:
        dlg="results/attacks/dlg/dlg.csv",
    output:
        **table_outputs("inversion"),
    log:
        f"{LOGS}/report/table_inversion.log",
    params:
        kind="inversion",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/table.py"


rule figure_training:
    """Training curves of one scenario: local loss and validation MAE per round and center."""
    input:
        history="results/train/{scenario}/history.tsv",
    output:
        report(
            f"{FIGURES}/training/{{scenario}}.png",
            caption="../report/figure_training.rst",
            category="Training",
            subcategory="{scenario}",
            labels={"scenario": "{scenario}", "figure": "training curves"},
        ),
    log:
        f"{LOGS}/report/figure_training/{{scenario}}.log",
    params:
        poisoned=lambda wc: SCENARIOS[wc.scenario].poison_center,
        loss=config["train"]["loss"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/figure_training.py"


rule figure_poisoning:
    """Heatmaps of the MAE change caused by poisoning, per noise level and aggregation."""
    input:
        grid=f"{TABLES}/poisoning.csv",
    output:
        report(
            f"{FIGURES}/poisoning_heatmap.png",
            caption="../report/figure_poisoning.rst",
            category="Integrity",
            subcategory="Data poisoning",
            labels={"figure": "MAE change heatmaps"},
        ),
    log:
        f"{LOGS}/report/figure_poisoning.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/figure_poisoning.py"


rule figure_sct:
    """Paper 000 Fig. 4: CT, sCT (FedAvg, FedMedian) and CT - sCT per poisoned center."""
    # attacks env: the SynthRAD metrics module imports torch
    input:
        unpack(sct_comparison_inputs),
    output:
        report(
            f"{FIGURES}/sct_comparison.png",
            caption="../report/figure_sct.rst",
            category="Integrity",
            subcategory="Data poisoning",
            labels={"figure": "sCT comparison"},
        ),
    log:
        f"{LOGS}/report/figure_sct.log",
    params:
        rows=SCT_ROWS,
        gamma=SCT_GAMMA,
        candidates=[[c, p] for c, p in SCT_CANDIDATES],
        sct_pattern=lambda wc: SCT_PATTERN,  # a lambda: params strings are wildcard-expanded
        volumes={f"{c}/{p}": preprocessed(c, p) for c, p in SCT_CANDIDATES},
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/attacks.yaml"
    script:
        "../scripts/figure_sct.py"


rule figure_fedmia_roc:
    """Paper 000 Fig. 3: pooled FedMIA ROC curves, membership beside center inference."""
    input:
        table="results/attacks/fedmia/fedmia.csv",
        roc=expand("results/attacks/fedmia/{scenario}/roc.npz", scenario=FEDMIA_SCENARIOS),
    output:
        report(
            f"{FIGURES}/fedmia_roc.png",
            caption="../report/figure_fedmia_roc.rst",
            category="Privacy",
            subcategory="Membership inference (FedMIA)",
            labels={"figure": "ROC curves"},
        ),
    log:
        f"{LOGS}/report/figure_fedmia_roc.log",
    params:
        scenarios=FEDMIA_SCENARIOS,
        unit=FEDMIA["units"][0],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/figure_fedmia_roc.py"


rule figure_dlg:
    """Paper 000 Fig. 2: DLG reconstruction evolution per center for one optimiser."""
    # attacks env: the attack's results are read back with torch
    input:
        results=lambda wc: [
            f"results/attacks/dlg/{wc.scenario}/{c}_{wc.optimizer}.npz" for c in TRAIN_CENTERS
        ],
    output:
        report(
            f"{FIGURES}/dlg_evolution_{{scenario}}_{{optimizer}}.png",
            caption="../report/figure_dlg.rst",
            category="Privacy",
            subcategory="Gradient inversion (DLG)",
            labels={"scenario": "{scenario}", "optimizer": "{optimizer}"},
        ),
    log:
        f"{LOGS}/report/figure_dlg/{{scenario}}_{{optimizer}}.log",
    params:
        centers=TRAIN_CENTERS,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/attacks.yaml"
    script:
        "../scripts/figure_dlg.py"


rule front_page:
    """The report's front page: the introduction and the audit verdict computed from the tables."""
    input:
        tables=[getattr(rules, f"table_{name}").output.csv for name in TABLE_NAMES],
        qc_flags=QC_FLAGS,
    output:
        FRONT_PAGE,
    log:
        f"{LOGS}/report/front_page.log",
    params:
        # the text, not the path: an absolute input path would re-run the rule whenever the
        # checkout moves, while an edited introduction still does (a lambda: params strings are
        # wildcard-expanded, and the text holds the report's {{ }} templates)
        intro=lambda wc: Path(workflow.basedir, "workflow/report/workflow.rst").read_text(
            encoding="utf-8"
        ),
        names=TABLE_NAMES,
        demo=any(spec["source"]["type"] == "demo" for spec in config["centers"].values()),
        # the membership verdict reads one unit, fixed before any result: the first configured
        fedmia_unit=FEDMIA["units"][0],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/front_page.py"


rule report_all:
    input:
        report_items,
        FRONT_PAGE,
