"""Rule fedmia_summary: one table of every FedMIA result and the ROC figure."""

from _common import logged

with logged(snakemake) as log:
    import pandas as pd

    from fedaudit.plots.roc import fedmia_roc_figure

    table = pd.concat([pd.read_csv(f) for f in snakemake.input.metrics], ignore_index=True)
    table.to_csv(snakemake.output.table, index=False)
    fedmia_roc_figure(dict(zip(snakemake.params.scenarios, snakemake.input.roc, strict=True)),
                      table, snakemake.output.figure)
    log.info("%d rows; ROC figure %s", len(table), snakemake.output.figure)
