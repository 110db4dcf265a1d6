# The noise replay (fedaudit.attacks.noise_replay) by the honest-but-curious server on its log:
# per attacked scenario one job over every logged round and client; one table.

from fedaudit.attacks.noise_replay.replay import replayable  # noqa: E402

NOISE_REPLAY = config["attacks"]["noise_replay"]
# the noise grid's scenarios whose clients noise the update they send (not DP-SGD's)
NOISE_REPLAY_SCENARIOS = (
    [
        s
        for s in NOISE_REPLAY["scenarios"]
        if any(replayable(d["name"]) for d in SCENARIOS[s].defenses)
    ]
    if NOISE_REPLAY["enabled"]
    else []
)
ATTACKED["noise_replay"] = NOISE_REPLAY_SCENARIOS


localrules:
    noise_replay,
    table_noise_replay,


rule noise_replay:
    """Regenerate and subtract the noise of every logged update of one scenario."""
    input:
        server_log=rules.train.output.server_log,
    output:
        table="results/attacks/noise_replay/{scenario}.csv",
    log:
        f"{LOGS}/attacks/noise_replay/{{scenario}}.log",
    params:
        attack="noise_replay",
        step="attack",
        defenses=lambda wc: SCENARIO_META[wc.scenario]["defenses"],
        rounds=NOISE_REPLAY["rounds"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["attacks"]
    script:
        STEP_SCRIPT


rule table_noise_replay:
    """Per replayed scenario: the share of noise removed, the residual, the control."""
    input:
        replays=expand(rules.noise_replay.output.table, scenario=NOISE_REPLAY_SCENARIOS),
    output:
        **table_outputs("noise_replay", "report_captions/table.rst"),
    log:
        f"{LOGS}/report/table_noise_replay.log",
    params:
        table="noise_replay",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        TABLE_SCRIPT


if NOISE_REPLAY_SCENARIOS:
    register_outputs(
        outputs=expand(rules.noise_replay.output.table, scenario=NOISE_REPLAY_SCENARIOS),
        tables=["noise_replay"],
    )
