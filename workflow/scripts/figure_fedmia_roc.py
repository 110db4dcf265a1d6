"""Rule figure_fedmia_roc: ROC curves per target center, without and with SecAgg+ (Fig. 3)."""

from _common import logged

with logged(snakemake) as log:
    import pandas as pd

    from fedaudit.plots.roc import fedmia_roc_figure

    table = pd.read_csv(snakemake.input.table)
    fedmia_roc_figure(dict(zip(snakemake.params.scenarios, snakemake.input.roc, strict=True)),
                      table, snakemake.output[0])
    log.info("ROC figure %s", snakemake.output[0])
