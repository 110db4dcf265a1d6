# The one-run privacy audit (fedaudit.attacks.privacy_audit): per audited scenario one job of
# canary clients through the scenario's client mods, scored by the server; one table.

from fedaudit.attacks.privacy_audit.plugin import auditable, trains_dp_sgd  # noqa: E402

PRIVACY_AUDIT = config["attacks"]["privacy_audit"]
# the control (no noise) and the update-noise levels; not SecAgg+ nor DP-SGD (plugin.py)
PRIVACY_AUDIT_SCENARIOS = (
    [s for s in PRIVACY_AUDIT["scenarios"] if auditable(SCENARIOS[s].defenses) is None]
    if PRIVACY_AUDIT["enabled"]
    else []
)
SAMPLE_AUDIT = PRIVACY_AUDIT["sample_level"]
# sample-level canaries: the scenarios that train with DP-SGD (sample_round.py)
SAMPLE_AUDIT_SCENARIOS = (
    (
        SAMPLE_AUDIT["scenarios"]
        if SAMPLE_AUDIT["scenarios"] is not None
        else [s for s, sc in SCENARIOS.items() if trains_dp_sgd(sc.defenses)]
    )
    if SAMPLE_AUDIT["enabled"]
    else []
)
ATTACKED["privacy_audit"] = PRIVACY_AUDIT_SCENARIOS + SAMPLE_AUDIT_SCENARIOS


localrules:
    table_privacy_audit,


rule privacy_audit:
    """Run the canary clients of one scenario and score their messages as the server."""
    input:
        # the model's arrays the canaries' updates span, and the clients' update norms
        server_log=rules.train.output.server_log,
    output:
        table="results/attacks/privacy_audit/{scenario}.csv",
    log:
        f"{LOGS}/attacks/privacy_audit/{{scenario}}.log",
    params:
        attack="privacy_audit",
        step="attack",
        scenario=lambda wc: SCENARIO_META[wc.scenario],
        rounds=lambda wc: scenario_train(wc.scenario)["rounds"],
        canaries=PRIVACY_AUDIT["canaries"],
        unclaimed_canaries=PRIVACY_AUDIT["unclaimed_canaries"],
        norm_factor=PRIVACY_AUDIT["norm_factor"],
        delta=PRIVACY_AUDIT["delta"],
        seed=config["seed"],
        plugins=config["plugins"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc: 5 + PRIVACY_AUDIT["canaries"] // 200,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule privacy_audit_sample:
    """One client's DP-SGD round re-run with sample-level canaries, and without noise."""
    input:
        # the global model of the audited round
        server_log=rules.train.output.server_log,
        # the client's data and its federation as trained
        volumes=training_volumes,
        splits=expand(rules.splits.output[0], center=TRAIN_CENTERS),
        qc_flags=QC_FLAGS,
    output:
        table="results/attacks/privacy_audit/sample/{scenario}.csv",
    log:
        f"{LOGS}/attacks/privacy_audit/sample/{{scenario}}.log",
    params:
        attack="privacy_audit",
        step="attack_sample",
        scenario=lambda wc: SCENARIOS[wc.scenario].as_dict(),
        train=lambda wc: scenario_train(wc.scenario),
        sample_level=SAMPLE_AUDIT,
        seed=config["seed"],
        centers=TRAIN_CENTERS,
        plugins=config["plugins"],
    threads: EXECUTION["attacks"]["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule table_privacy_audit:
    """Per audited scenario: the measured ε lower bound beside the claimed ε."""
    input:
        audits=expand(rules.privacy_audit.output.table, scenario=PRIVACY_AUDIT_SCENARIOS),
        samples=expand(rules.privacy_audit_sample.output.table, scenario=SAMPLE_AUDIT_SCENARIOS),
    output:
        **table_outputs("privacy_audit", "report_captions/table.rst"),
    log:
        f"{LOGS}/report/table_privacy_audit.log",
    params:
        table="privacy_audit",
        confidence=PRIVACY_AUDIT["confidence"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        TABLE_SCRIPT


if PRIVACY_AUDIT_SCENARIOS or SAMPLE_AUDIT_SCENARIOS:
    register_outputs(
        outputs=expand(rules.privacy_audit.output.table, scenario=PRIVACY_AUDIT_SCENARIOS)
        + expand(rules.privacy_audit_sample.output.table, scenario=SAMPLE_AUDIT_SCENARIOS),
        tables=["privacy_audit"],
    )
