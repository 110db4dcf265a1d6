"""Rule fedmia_summary: one table of every FedMIA result."""

from _common import logged

with logged(snakemake) as log:
    import pandas as pd

    table = pd.concat([pd.read_csv(f) for f in snakemake.input.metrics], ignore_index=True)
    table.to_csv(snakemake.output.table, index=False)
    log.info("%d rows", len(table))
