"""Rule eval_summary: per-center mean/sd of all scenarios and paired Wilcoxon tests."""

from _common import logged

with logged(snakemake) as log:
    import pandas as pd

    from fedaudit.evaluation.stats import summarize, wilcoxon_vs_reference

    df = pd.concat([pd.read_csv(f) for f in snakemake.input], ignore_index=True)
    summarize(df).to_csv(snakemake.output.summary, index=False)
    tests = wilcoxon_vs_reference(df, dict(snakemake.params.references))
    tests.to_csv(snakemake.output.wilcoxon, index=False)
    log.info("%d scenarios, %d tests", df["scenario"].nunique(), len(tests))
