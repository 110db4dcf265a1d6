# Evasion across the attacked federations (fedaudit.comparisons.evasion_dp): its table reads the
# evasion attack's summary and, for DP-SGD's per-client ε, the training histories. Included after
# every attack's rules.

# the federations the evasion attack attacks (baseline, FedMedian, the noise grid)
EVASION_DP_SCENARIOS = ATTACKED["evasion"]


localrules:
    table_evasion_dp,


rule table_evasion_dp:
    """Per scenario: the headline attack's white-box ASR against the victims' AASR."""
    input:
        rates=rules.evasion_summary.output.rates,
        # DP-SGD's ε is per client, from the (q, steps) in each client's own record
        histories=expand(rules.train.output.clients, scenario=EVASION_DP_SCENARIOS),
    output:
        **table_outputs("evasion_dp", "report_captions/table.rst"),
    log:
        f"{LOGS}/report/table_evasion_dp.log",
    params:
        table="evasion_dp",
        scenarios={s: SCENARIO_META[s] for s in EVASION_DP_SCENARIOS},
        rounds={s: scenario_train(s)["rounds"] for s in EVASION_DP_SCENARIOS},
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


if EVASION_DP_SCENARIOS:
    register_outputs(tables=["evasion_dp"])
