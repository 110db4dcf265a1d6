# Federated training per scenario (paper 000, "Federated Learning Framework"), Flower apps with an
# in-process, Ray or deployment (a SuperLink and one SuperNode per center on localhost) backend; a
# scenario is a composition from the threat catalog (aggregation rule, defenses, malicious
# clients, server behaviour). Checkpoints (and the server log's rounds while training) live
# beside the outputs, not declared, so a killed job resumes from its last round when re-run.


wildcard_constraints:
    scenario=any_of(list(SCENARIOS)),


rule train:
    """Train one scenario's federation; write the global model, history and server log."""
    input:
        volumes=training_volumes,
        splits=expand(rules.splits.output[0], center=TRAIN_CENTERS),
        qc_flags=QC_FLAGS,
        constant=CONSTANT_VALUE,
    output:
        model=ensure("results/train/{scenario}/model.pt", non_empty=True),
        history=ensure("results/train/{scenario}/history.tsv", non_empty=True),
        # the clients' own records (loss, validation MAE, counts): never the server's
        clients=ensure("results/train/{scenario}/clients.tsv", non_empty=True),
        # the honest-but-curious server's log, which the attacks take as input
        server_log=directory("results/train/{scenario}/server_log"),
    log:
        f"{LOGS}/train/{{scenario}}.log",
    params:
        scenario=lambda wc: SCENARIOS[wc.scenario].as_dict(),
        out_dir=lambda wc: f"results/train/{wc.scenario}",
        # every setting that shapes the model is a param: changing one re-trains exactly the
        # scenarios that read it (fedaudit.scenarios.result_settings)
        train=lambda wc: scenario_train(wc.scenario),
        seed=config["seed"],
        centers=TRAIN_CENTERS,
    # deployed, the centers' ClientApp processes train at the same time, each on
    # execution.train.threads
    threads:
        EXECUTION["train"]["threads"]
        * (len(TRAIN_CENTERS) if EXECUTION["train"]["backend"] == "deployment" else 1)
    priority: train_priority
    resources:
        # MR + CT float32 and a mask per patient held in memory (~9 B/voxel; 16 with headroom)
        mem_mb=3000
        + 16 * config["preprocess"]["cube"]["size"] ** 3 * len(TRAINING_PATIENTS) // 2**20,
        runtime=lambda wc: max(10, config["train"]["rounds"] * 15),
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train.py"


rule train_all:
    input:
        expand(rules.train.output.model, scenario=list(SCENARIOS)),
