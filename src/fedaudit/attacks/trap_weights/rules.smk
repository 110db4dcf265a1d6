# Trap-weight reconstruction by a malicious server (paper 002): per attacked scenario the 2-D
# sweeps (one job per training mode), the 3-D volumes and the two client-side defenses; three
# tables and two figures. Every job runs one-round federations of the real clients from the
# server's own global model of the attacked round (fedaudit.attacks.trap_weights.harness).

from fedaudit.attacks.trap_weights.sweep import NOT_SETTINGS as TRAP_NOT_SETTINGS
from fedaudit.attacks.trap_weights.sweep import mode_settings as trap_mode_settings
from fedaudit.scenarios import dp_on_update

TRAP = config["attacks"]["trap_weights"]
TRAP_SCENARIOS = TRAP["scenarios"] if TRAP["enabled"] else []
# the clients' defenses are also measured under each DP-FedAvg level of the noise grid: the
# weight audit discounts the change DP noise explains, and what that lets through is measured
TRAP_DEFENSE_SCENARIOS = TRAP_SCENARIOS + [
    s
    for s in (SCENARIOS if TRAP["enabled"] else [])
    if s not in TRAP_SCENARIOS and any(dp_on_update(d["name"]) for d in SCENARIOS[s].defenses)
]
ATTACKED["trap_weights"] = TRAP_DEFENSE_SCENARIOS
# 3-D needs one client's own update: under SecAgg+ the server holds only the sum.
TRAP_VOLUME_SCENARIOS = [s for s in TRAP_SCENARIOS if not SCENARIOS[s].secagg]
# What every trap-weight job reads besides its own sweep lists: not which scenarios are attacked,
# nor the local mode's own sweep (only the local-mode jobs read it)
TRAP_SETTINGS = {k: v for k, v in TRAP.items() if k not in TRAP_NOT_SETTINGS}
TRAP_DIR = "results/attacks/trap_weights"


wildcard_constraints:
    trap_mode=any_of(TRAP["modes"]),


# small jobs run locally, not queued on a cluster
localrules:
    table_trap_weights,
    table_trap_weights_3d,
    table_trap_weights_defenses,
    figure_trap_weights,


rule trap_weights:
    """2-D: batch size x federation size x initialisation, in one local training mode."""
    input:
        server_log=rules.train.output.server_log,
        volumes=training_volumes,
        splits=expand(rules.splits.output[0], center=TRAIN_CENTERS),
        qc_flags=QC_FLAGS,
    output:
        table=f"{TRAP_DIR}/{{scenario}}/slices_{{trap_mode}}.csv",
        examples=f"{TRAP_DIR}/{{scenario}}/examples_{{trap_mode}}.npz",
    log:
        f"{LOGS}/attacks/trap_weights/{{scenario}}_{{trap_mode}}.log",
    params:
        attack="trap_weights",
        step="slices",
        # the local mode takes its own batch sizes and inits (attacks.trap_weights.local)
        trap=lambda wc: trap_mode_settings(TRAP, wc.trap_mode),
        scenario=lambda wc: SCENARIOS[wc.scenario].as_dict(),
        train=lambda wc: scenario_train(wc.scenario),
        seed=config["seed"],
        centers=TRAIN_CENTERS,
    threads: EXECUTION["attacks"]["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule trap_weights_volumes:
    """3-D: each client's first training volume, sent in order B slices per trap round."""
    input:
        server_log=rules.train.output.server_log,
        volumes=training_volumes,
        splits=expand(rules.splits.output[0], center=TRAIN_CENTERS),
        qc_flags=QC_FLAGS,
    output:
        table=f"{TRAP_DIR}/{{scenario}}/volumes.csv",
        example=f"{TRAP_DIR}/{{scenario}}/volume_example.npz",
    log:
        f"{LOGS}/attacks/trap_weights/{{scenario}}_volumes.log",
    params:
        attack="trap_weights",
        step="volumes",
        trap=TRAP_SETTINGS,
        scenario=lambda wc: SCENARIOS[wc.scenario].as_dict(),
        train=lambda wc: scenario_train(wc.scenario),
        seed=config["seed"],
        centers=TRAIN_CENTERS,
    threads: EXECUTION["attacks"]["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule trap_weights_defenses:
    """The architecture check and the weight audit against both malicious servers."""
    input:
        server_log=rules.train.output.server_log,
        volumes=training_volumes,
        splits=expand(rules.splits.output[0], center=TRAIN_CENTERS),
        qc_flags=QC_FLAGS,
    output:
        table=f"{TRAP_DIR}/{{scenario}}/defenses.csv",
    log:
        f"{LOGS}/attacks/trap_weights/{{scenario}}_defenses.log",
    params:
        attack="trap_weights",
        step="defenses",
        trap=TRAP_SETTINGS,
        audit=config["defenses"]["weight_audit"],
        scenario=lambda wc: SCENARIOS[wc.scenario].as_dict(),
        train=lambda wc: scenario_train(wc.scenario),
        seed=config["seed"],
        centers=TRAIN_CENTERS,
    threads: EXECUTION["attacks"]["threads"]
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule table_trap_weights:
    """Paper 002 Table 1's layout: recovered / attacked, SSIM and MSE per batch x clients."""
    input:
        slices=expand(
            rules.trap_weights.output.table, scenario=TRAP_SCENARIOS, trap_mode=TRAP["modes"]
        ),
    output:
        **table_outputs("trap_weights", "report_captions/table.rst"),
    log:
        f"{LOGS}/report/table_trap_weights.log",
    params:
        table="trap_weights",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        TABLE_SCRIPT


rule table_trap_weights_3d:
    """Paper 002 Table 2's layout: slices recovered / depth, 3-D SSIM and PSNR."""
    input:
        volumes=expand(rules.trap_weights_volumes.output.table, scenario=TRAP_VOLUME_SCENARIOS),
    output:
        **table_outputs("trap_weights_3d", "report_captions/table_3d.rst"),
    log:
        f"{LOGS}/report/table_trap_weights_3d.log",
    params:
        table="trap_weights_3d",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        TABLE_SCRIPT


rule table_trap_weights_defenses:
    """Detections on trap rounds and false alarms over every honest round of every scenario."""
    input:
        defenses=expand(rules.trap_weights_defenses.output.table, scenario=TRAP_DEFENSE_SCENARIOS),
        histories=expand(rules.train.output.history, scenario=list(SCENARIOS)),
    output:
        **table_outputs("trap_weights_defenses", "report_captions/table_defenses.rst"),
    log:
        f"{LOGS}/report/table_trap_weights_defenses.log",
    params:
        table="trap_weights_defenses",
        audit=config["defenses"]["weight_audit"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        TABLE_SCRIPT


rule figure_trap_weights:
    """Paper 002 Figs. 2-3: original vs reconstructed slices, and the reassembled volume."""
    input:
        examples=lambda wc: expand(
            rules.trap_weights.output.examples, scenario=wc.scenario, trap_mode=TRAP["modes"][0]
        ),
        volume=lambda wc: (
            expand(rules.trap_weights_volumes.output.example, scenario=wc.scenario)
            if wc.scenario in TRAP_VOLUME_SCENARIOS
            else []
        ),
    output:
        slices=report(
            f"{FIGURES}/trap_weights_slices_{{scenario}}.png",
            caption="report_captions/figure.rst",
            category="Privacy",
            subcategory="Malicious server (trap weights)",
            labels={"scenario": "{scenario}", "figure": "slices"},
        ),
    log:
        f"{LOGS}/report/figure_trap_weights/{{scenario}}.log",
    params:
        attack="trap_weights",
        step="figure",
        threshold=TRAP["threshold"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


if TRAP_SCENARIOS:
    register_outputs(
        outputs=[
            *expand(
                rules.trap_weights.output.table, scenario=TRAP_SCENARIOS, trap_mode=TRAP["modes"]
            ),
            *expand(rules.trap_weights_defenses.output.table, scenario=TRAP_DEFENSE_SCENARIOS),
        ],
        tables=["trap_weights", "trap_weights_defenses"],
        figures=expand(rules.figure_trap_weights.output.slices, scenario=TRAP_SCENARIOS),
    )
if TRAP_VOLUME_SCENARIOS:
    register_outputs(tables=["trap_weights_3d"])
