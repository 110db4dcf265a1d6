"""Rule dlg_summary: one tidy table of every DLG result."""

from _common import logged

with logged(snakemake) as log:
    import pandas as pd

    from fedaudit.io import read_json

    rows = [r for f in snakemake.input.metrics for r in read_json(f)["results"]]
    wide = pd.DataFrame(rows).drop(columns=["slices"])
    keys = ["scenario", "center", "optimizer", "network", "round", "target", "batch_size"]
    tidy = wide.melt(id_vars=keys, var_name="metric", value_name="value")
    tidy.to_csv(snakemake.output.table, index=False)
    for kind in ("raw", "fit"):
        log.info("DLG SSIM in the mask, %s:\n%s",
                 "as reconstructed" if kind == "raw" else "after the gain/offset fit",
                 wide.pivot_table(index=["scenario", "center"], columns=["optimizer", "network"],
                                  values=f"ssim_{kind}").round(3).to_string())
