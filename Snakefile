# FedAudit: security audit of federated brain MRI -> synthetic CT translation (FedSynthCT-Brain).
# Stages: demo data -> per-center preprocessing -> patient-level splits -> federated training per
# scenario -> evaluation in HU -> privacy attacks on the server log -> tables, figures and the
# `snakemake --report` front page.
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# The demo config is the default; a --configfile on the command line replaces it (a deep merge of
# a real-data config into the demo one would mix sources).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# The report's front page carries the audit verdict computed from the results (rule front_page);
# before that rule has run, the static introduction stands in.
FRONT_PAGE = "results/report/front_page.rst"


report: str(Path(FRONT_PAGE).resolve()) if Path(FRONT_PAGE).exists() else "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/attacks.smk"
include: "workflow/rules/comparisons.smk"
include: "workflow/rules/report.smk"


# Small jobs (tables, summaries, figures, the front page) run where snakemake runs: on a cluster
# they would wait in the queue longer than they compute. Plugin rule files add their own.
localrules:
    all,
    data_all,
    preprocess_all,
    train_all,
    evaluate_all,
    attacks_all,
    report_all,
    results_page,
    qc_table,
    splits,
    eval_summary,
    table_quality,
    figure_training,
    front_page,
    table_runtimes,


rule all:
    input:
        rules.data_all.input,
        rules.preprocess_all.input,
        rules.evaluate_all.input,
        rules.attacks_all.input,
        rules.report_all.input,
    default_target: True


# last: every script rule's code digest is a param (fedaudit.code_digest)
include: "workflow/rules/code.smk"
# last: every script rule writes a benchmark file
include: "workflow/rules/benchmarks.smk"
