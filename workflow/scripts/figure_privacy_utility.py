"""Rule figure_privacy_utility: utility against attack success per noise level (report env)."""

from _common import logged

with logged(snakemake) as log:
    import pandas as pd

    from fedaudit.catalog import catalog
    from fedaudit.comparisons.privacy_utility.figures import privacy_utility_figure

    catalog(snakemake.params.plugins)  # a plugin's noise family labels its own line
    table = pd.read_csv(snakemake.input.table)
    privacy_utility_figure(table, snakemake.output[0])
    log.info("privacy-utility figure %s (%d federations)", snakemake.output[0], len(table))
