"""Rule evaluate: sCT for every test patient of one scenario, and SynthRAD2023 metrics."""

from _common import logged

with logged(snakemake) as log:
    from fedaudit.evaluation.run import evaluate_scenario
    from fedaudit.preprocess.outliers import read_excluded

    p = snakemake.params
    table = evaluate_scenario(
        model_path=snakemake.input.model, patients=[tuple(x) for x in p.patients],
        preprocessed_root="results/preprocessed", sct_paths=list(snakemake.output.sct),
        metrics_path=snakemake.output.metrics, scenario=snakemake.wildcards.scenario,
        fusion=p.fusion, batch_size=p.batch_size, device=p.device, amp=p.amp,
        excluded=read_excluded(snakemake.input.qc_flags))
    log.info("per-center MAE (HU, QC-excluded patients left out): %s",
             table[~table["excluded"]].groupby("center")["mae"].mean().round(1).to_dict())
