# The noise defenses' privacy-utility comparison (fedaudit.comparisons.privacy_utility): its
# table reads the inversion suite's, FedMIA's and the noise replay's summaries and the
# evaluation's; the figure reads the table. Included after every attack's rules.
from pathlib import Path

# the noise levels the inversion suite attacks, and those the server's noise replay attacks
PU_SCENARIOS = ATTACKED["gradinv"]
PU_REPLAYED = [s for s in PU_SCENARIOS if s in ATTACKED["noise_replay"]]
# and those the one-run privacy audit measures (fedaudit.attacks.privacy_audit)
PU_AUDITED = [s for s in PU_SCENARIOS if s in ATTACKED["privacy_audit"]]

FIGURE_PRIVACY_UTILITY_SCRIPT = str(
    Path(workflow.basedir) / "workflow" / "scripts" / "figure_privacy_utility.py"
)


localrules:
    table_privacy_utility,
    figure_privacy_utility,


rule table_privacy_utility:
    """Per noise level: utility (sCT MAE/SSIM, classifier accuracy), attack success, FedMIA, ε."""
    input:
        gradinv=rules.gradinv_summary.output.table,
        classifier=rules.gradinv_summary.output.classifier,
        quality=rules.eval_summary.output.summary,
        fedmia=(rules.fedmia_summary.output.table if config["attacks"]["fedmia"]["enabled"] else []),
        # DP-SGD's ε is per client, from the (q, steps) in each client's own record
        histories=expand(rules.train.output.clients, scenario=PU_SCENARIOS),
        classifiers=expand(rules.gradinv_classifier.output.folder, scenario=PU_SCENARIOS),
        # the server's noise replay per noised scenario (fedaudit.attacks.noise_replay)
        replay=expand(rules.noise_replay.output.table, scenario=PU_REPLAYED),
        # the privacy audit's table: the measured ε beside the claimed one per audited level
        audit=rules.table_privacy_audit.output.csv if PU_AUDITED else [],
    output:
        **table_outputs("privacy_utility", "report_captions/privacy_utility.rst"),
    log:
        f"{LOGS}/report/table_privacy_utility.log",
    params:
        table="privacy_utility",
        scenarios={s: SCENARIO_META[s] for s in PU_SCENARIOS},
        rounds={s: scenario_train(s)["rounds"] for s in PU_SCENARIOS},
        classifier_rounds=config["attacks"]["gradinv"]["classifier"]["rounds"],
        # DP-SGD's patient-level bound: every slice of a patient's cube in three orientations
        slices_per_patient=3 * config["preprocess"]["cube"]["size"],
        # a plugin defense's model hook names the UNet a scenario trains
        plugins=config["plugins"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        TABLE_SCRIPT


rule figure_privacy_utility:
    """Utility against attack success, one point per noise level, ε as labels."""
    input:
        table=rules.table_privacy_utility.output.csv,
    output:
        report(
            f"{FIGURES}/privacy_utility.png",
            caption="report_captions/figure.rst",
            category="Privacy",
            subcategory="Noise defenses: privacy-utility",
        ),
    log:
        f"{LOGS}/report/figure_privacy_utility.log",
    params:
        plugins=config["plugins"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        FIGURE_PRIVACY_UTILITY_SCRIPT


if PU_SCENARIOS:
    register_outputs(tables=["privacy_utility"], figures=rules.figure_privacy_utility.output)
