"""Rule eval_summary: per-center mean/sd of all scenarios and of the constant predictor, each
MAE beside the constant's, and paired Wilcoxon tests. QC-excluded patients are left out."""

from _common import logged

with logged(snakemake) as log:
    import pandas as pd

    from fedaudit.atomic import write_csv
    from fedaudit.evaluation.stats import summarize, wilcoxon_vs_reference, with_constant_ratio

    inp = snakemake.input
    df = pd.concat([pd.read_csv(f) for f in [*inp.scenarios, inp.constant]], ignore_index=True)
    dropped = df[df["excluded"]]
    if len(dropped):
        log.warning("left out (QC-excluded): %s",
                    sorted(set(dropped["center"] + "/" + dropped["patient"])))
    df = df[~df["excluded"]].drop(columns="excluded")
    summary = with_constant_ratio(summarize(df))
    write_csv(summary, snakemake.output.summary, index=False)
    tests = wilcoxon_vs_reference(df, dict(snakemake.params.references))
    write_csv(tests, snakemake.output.wilcoxon, index=False)
    log.info("%d scenarios, %d tests; MAE / constant predictor's MAE:\n%s",
             df["scenario"].nunique() - 1, len(tests),
             summary.pivot(index="scenario", columns="center", values="mae_vs_constant")
             .round(2).to_string())
