"""Rule figure_poisoning: heatmaps of the MAE change caused by poisoning (Table 3 as a picture)."""

from _common import logged

with logged(snakemake) as log:
    import pandas as pd

    from fedaudit.attacks.poisoning.figures import poisoning_heatmap_figure

    drawn = poisoning_heatmap_figure(pd.read_csv(snakemake.input.grid), snakemake.output[0])
    log.info("%d cells drawn", len(drawn))
