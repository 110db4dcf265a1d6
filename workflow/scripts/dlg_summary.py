"""Rule dlg_summary: one table of every DLG result and the evolution montages."""

from _common import logged

with logged(snakemake) as log:
    from pathlib import Path

    import pandas as pd

    from fedaudit.io import read_json
    from fedaudit.plots.dlg import dlg_evolution_figure

    rows = [r for f in snakemake.input.metrics for r in read_json(f)["results"]]
    wide = pd.DataFrame(rows).drop(columns=["slices"])
    keys = ["scenario", "center", "optimizer", "network", "round", "target", "batch_size"]
    tidy = wide.melt(id_vars=keys, var_name="metric", value_name="value")
    tidy.to_csv(snakemake.output.table, index=False)
    # The inputs are ordered scenario x center x optimiser and the figures scenario x optimiser,
    # as the rule's expand() lists them.
    p = snakemake.params
    results = iter(snakemake.input.results)
    npz = {(s, c, o): Path(next(results)) for s in p.scenarios for c in p.centers
           for o in p.optimizers}
    figures = iter(snakemake.output.figures)
    for scenario in p.scenarios:
        for opt in p.optimizers:
            dlg_evolution_figure({c: npz[(scenario, c, opt)] for c in p.centers}, next(figures),
                                 f"DLG reconstruction, {scenario}, {opt}")
    log.info("DLG SSIM in the mask:\n%s",
             wide.pivot_table(index=["scenario", "center"], columns=["optimizer", "network"],
                              values="ssim").round(3).to_string())
