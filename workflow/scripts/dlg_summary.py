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
    p = snakemake.params
    for scenario in p.scenarios:
        for opt in p.optimizers:
            out = f"results/attacks/dlg/{scenario}/evolution_{opt}.png"
            results = {c: Path(f"results/attacks/dlg/{scenario}/{c}_{opt}.npz")
                       for c in p.centers}
            dlg_evolution_figure(results, out, f"DLG reconstruction, {scenario}, {opt}")
    log.info("DLG SSIM in the mask:\n%s",
             wide.pivot_table(index=["scenario", "center"], columns=["optimizer", "network"],
                              values="ssim").round(3).to_string())
