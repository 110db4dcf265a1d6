"""Rule figure_fedmia_roc: pooled FedMIA ROC curves per scenario and server view (Fig. 3)."""

from _common import logged

with logged(snakemake) as log:
    import pandas as pd

    from fedaudit.plots.roc import fedmia_roc_figure

    table = pd.read_csv(snakemake.input.table)
    fedmia_roc_figure(dict(zip(snakemake.params.scenarios, snakemake.input.roc, strict=True)),
                      table, snakemake.output[0], unit=snakemake.params.unit)
    log.info("ROC figure %s", snakemake.output[0])
