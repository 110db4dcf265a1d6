# Data poisoning (paper 000 "Data Poisoning", Table 3, Fig. 4): the poisoned federations are
# scenarios (their client_attacks), trained and evaluated like the others; this file adds the
# Table 3 layout, the MAE-change heatmaps and the sCT comparison figure.

from pathlib import Path

from fedaudit.report.selection import comparison_gamma, comparison_rows  # noqa: E402
from fedaudit.federation.aggregation import trims_to_median  # noqa: E402

POISONED = [s.name for s in SCENARIOS.values() if s.poison_center is not None]
SCT_GAMMA = comparison_gamma(SCENARIOS)
SCT_ROWS = comparison_rows(SCENARIOS, SCT_GAMMA) if SCT_GAMMA is not None else []
SCT_REFERENCE = SCT_ROWS[0][1] or SCT_ROWS[0][2] if SCT_ROWS else None
# Paper Fig. 4 shows an external-center patient; without an external center, any test patient.
SCT_CANDIDATES = [(c, p) for c, p in test_patients() if c in EXTERNAL_CENTERS] or test_patients()
_SCT_SCENARIOS = [s for _, *pair in SCT_ROWS for s in pair if s]
POISONING_SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"


# small jobs run locally, not queued on a cluster
localrules:
    table_poisoning,
    figure_poisoning,
    figure_sct,


rule table_poisoning:
    """Paper 000 Table 3: MAE per poisoned center x noise x evaluated center, per aggregation."""
    input:
        summary=rules.eval_summary.output.summary,
        wilcoxon=rules.eval_summary.output.wilcoxon,
    output:
        **table_outputs("poisoning", "report_captions/table.rst"),
    log:
        f"{LOGS}/report/table_poisoning.log",
    params:
        table="poisoning",
        scenarios=SCENARIO_META,
        # the first run's training seed, named in the rows when there are replicas
        seed=config["seed"],
        external=EXTERNAL_CENTERS,
        trimmed_is_median=trims_to_median(
            len(TRAIN_CENTERS), config["aggregations"]["trimmed_mean"]["beta"]
        ),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        TABLE_SCRIPT


rule figure_poisoning:
    """Heatmaps of the MAE change caused by poisoning, per noise level and aggregation."""
    input:
        grid=rules.table_poisoning.output.csv,
    output:
        report(
            f"{FIGURES}/poisoning_heatmap.png",
            caption="report_captions/figure_heatmap.rst",
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
        CONDA_ENVS["report"]
    script:
        str(POISONING_SCRIPTS / "figure_poisoning.py")


rule figure_sct:
    """Paper 000 Fig. 4: CT, sCT (FedAvg, FedMedian) and CT - sCT per poisoned center."""

    # attacks env: the SynthRAD metrics module imports torch
    input:
        metrics=f"results/eval/{SCT_REFERENCE}/metrics.csv",
        sct=[
            SCT_PATTERN.format(scenario=s, center=c, patient=p)
            for s in _SCT_SCENARIOS
            for c, p in SCT_CANDIDATES
        ],
        volumes=[f for c, p in SCT_CANDIDATES for f in preprocessed(c, p)],
    output:
        report(
            f"{FIGURES}/sct_comparison.png",
            caption="report_captions/figure_sct.rst",
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
        CONDA_ENVS["attacks"]
    script:
        str(POISONING_SCRIPTS / "figure_sct.py")


if POISONED:
    register_outputs(tables=["poisoning"], figures=rules.figure_poisoning.output)
if SCT_ROWS and SCT_REFERENCE:
    register_outputs(figures=rules.figure_sct.output)
