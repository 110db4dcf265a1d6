"""Rule qc_table: every patient's QC record as one TSV row."""

from _common import logged

with logged(snakemake) as log:
    import pandas as pd

    from fedaudit.io import read_json

    rows = [read_json(p) for p in snakemake.input]
    table = pd.json_normalize(rows, sep=".")
    for col in table.columns:  # lists (shapes, vectors) read better as compact strings
        if table[col].map(lambda v: isinstance(v, list)).any():
            table[col] = table[col].map(lambda v: " ".join(f"{x:g}" if isinstance(x, float)
                                                             else str(x) for x in v))
    table.to_csv(snakemake.output[0], sep="\t", index=False, float_format="%.4g")
    log.info("%d patients", len(table))
