"""Rule evaluate: sCT for every test patient of one scenario, and SynthRAD2023 metrics."""

from _common import logged

with logged(snakemake) as log:
    from fedaudit.evaluation.run import evaluate_scenario
    from fedaudit.logs import console
    from fedaudit.preprocess.outliers import read_excluded, read_failed

    p = snakemake.params
    table = evaluate_scenario(
        model_path=snakemake.input.model, patients=[tuple(x) for x in p.patients],
        preprocessed_root="results/preprocessed", sct_paths=list(snakemake.output.sct),
        metrics_path=snakemake.output.metrics, scenario=snakemake.wildcards.scenario,
        fusion=p.fusion, batch_size=p.batch_size, amp=p.amp,
        # how it runs, not a param: the training device (config execution.train.device)
        device=snakemake.config["execution"]["train"]["device"],
        excluded=read_excluded(snakemake.input.qc_flags),
        failed=read_failed(snakemake.input.qc_flags))
    mae = table[~table["excluded"]].groupby("center")["mae"].mean().round(1).to_dict()
    log.info("per-center MAE (HU, QC-excluded patients left out): %s", mae)
    # the first numbers of a run, on the console as soon as this scenario is scored (the tables
    # wait for every scenario)
    console("sCT MAE per test center (HU): "
            + ", ".join(f"{c} {v:.0f}" for c, v in mae.items()))
