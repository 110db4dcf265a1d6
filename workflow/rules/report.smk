# Results people read (paper 000 Table 2, training curves) and the report's front page with the
# audit verdict; the attacks' tables and figures come with their plugins (attacks.smk). Every
# table and figure is marked for `snakemake --report`, with its caption in workflow/report/.

# The FedAvg federation without / with SecAgg+ that Table 2 compares.
PLAIN = "baseline" if "baseline" in SCENARIOS else None
SECURE = "secagg" if "secagg" in SCENARIOS else None
if PLAIN is not None:
    REPORT_TABLES.insert(0, "quality")
# the demo's synthetic data: the front page and the results page say so
DEMO_STUDY = any(spec["source"]["type"] == "demo" for spec in config["centers"].values())


rule table_quality:
    """Paper 000 Table 2: MAE, SSIM, PSNR per center without and with SecAgg+."""
    input:
        summary=rules.eval_summary.output.summary,
    output:
        **table_outputs("quality", "../report/table_quality.rst"),
    log:
        f"{LOGS}/report/table_quality.log",
    params:
        table="quality",
        plain=PLAIN,
        secure=SECURE,
        external=EXTERNAL_CENTERS,
        # each federation's runs, one per training seed (config seeds; None: one run)
        seeds=(
            None
            if config["seeds"] is None
            else {n: seed_runs(n) for n in (PLAIN, SECURE) if n is not None}
        ),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/report.yaml"
    script:
        TABLE_SCRIPT


rule figure_training:
    """Training curves of one scenario: loss and validation MAE per round and center."""

    # from the clients' own records: under a privacy defense the server never sees them
    input:
        history=rules.train.output.clients,
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


rule front_page:
    """The report's front page: the introduction and the audit verdict computed from the tables."""
    input:
        tables=[getattr(rules, f"table_{name}").output.csv for name in REPORT_TABLES],
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
        names=REPORT_TABLES,
        demo=DEMO_STUDY,
        # the training seeds (config seeds): a line that reads only the first says so
        seeds=TRAINING_SEEDS,
        # who attacks with what: per attacker's view, what it holds and the attacks run with it
        attackers=[
            (view.title, view.holds, [a.title for a in used])
            for view, used in CATALOG.attackers(a for a, s in ATTACKED.items() if s)
        ],
        # what each table's findings read from the config (e.g. the membership verdict's unit,
        # fixed before any result): a param, so changing it re-runs this rule
        settings={
            name: CATALOG.tables[name].call("settings", config, default={})
            for name in REPORT_TABLES
        },
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/front_page.py"


rule table_runtimes:
    """Where the run's time went: every other job's benchmark file, per rule and per scenario."""
    input:
        # everything else this configuration makes, so that the table is built last and again
        # whenever a job re-runs; the benchmark files themselves are found by params.rules
        rules.data_all.input,
        rules.preprocess_all.input,
        rules.evaluate_all.input,
        rules.attacks_all.input,
        report_items,
        FRONT_PAGE,
    output:
        **table_outputs("runtimes", "../report/table_runtimes.rst"),
    log:
        f"{LOGS}/report/table_runtimes.log",
    params:
        table="runtimes",
        benchmarks=lambda wc: BENCHMARKS,
        # rule -> its wildcard names (the benchmark file's path), every rule but this one
        rules=lambda wc: {k: v for k, v in BENCHMARK_RULES.items() if k != "table_runtimes"},
        # this configuration's values: a file of another scenario, center or patient is not
        # counted
        known={
            "scenario": list(SCENARIOS),
            "center": STUDY.centers(),
            "train_center": TRAIN_CENTERS,
            "patient": sorted({p for _, p in ALL_PATIENTS}),
        },
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/report.yaml"
    script:
        TABLE_SCRIPT


rule results_page:
    """The run's results page: the verdict, every table with its CSV's hash, date, machine, seed."""

    # fedaudit.report.results_page; for the demo it is published as docs/results-demo.md
    input:
        csv=[getattr(rules, f"table_{name}").output.csv for name in REPORT_TABLES]
        + [rules.table_runtimes.output.csv],
        md=[getattr(rules, f"table_{name}").output.md for name in REPORT_TABLES]
        + [rules.table_runtimes.output.md],
        front_page=FRONT_PAGE,
    output:
        "results/report/results.md",
    log:
        f"{LOGS}/report/results_page.log",
    params:
        names=REPORT_TABLES + ["runtimes"],
        seeds=TRAINING_SEEDS,
        demo=DEMO_STUDY,
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/results_page.py"


rule report_all:
    input:
        report_items,
        FRONT_PAGE,
        rules.table_runtimes.output,
        rules.results_page.output,
