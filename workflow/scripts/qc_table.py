"""Rule qc_table: every patient's QC record as one TSV row, per-center outlier flags, and the
flagged / excluded patients every later job reads (qc_flags.json)."""

from _common import logged

with logged(snakemake) as log:
    import pandas as pd

    from fedaudit.atomic import write_csv
    from fedaudit.io import read_json, write_json
    from fedaudit.preprocess.outliers import flag_outliers, flags_record

    p = snakemake.params
    rows = [read_json(path) for path in snakemake.input]
    table = flag_outliers(pd.json_normalize(rows, sep="."), threshold=p.outlier_z)
    first = ["center", "patient", "qc_flagged", "qc_reasons"]  # what a reader scans for
    table = table[first + [c for c in table.columns if c not in first]]
    for col in table.columns:  # lists (shapes, vectors) read better as compact strings
        if table[col].map(lambda v: isinstance(v, list)).any():
            table[col] = table[col].map(lambda v: " ".join(f"{x:g}" if isinstance(x, float)
                                                             else str(x) for x in v))
    write_csv(table, snakemake.output.table, sep="\t", index=False, float_format="%.4g")
    record = flags_record(table, policy=p.policy, threshold=p.outlier_z, left_out=p.left_out)
    write_json(record, snakemake.output.flags)
    log.info("%d patients, %d flagged; left out by preprocess.exclude: %s", len(table),
             len(record["flagged"]), ", ".join(record["left_out"]) or "none")
    for key, why in record["flagged"].items():
        log.warning("QC flag %s (%s): %s", key,
                    "excluded" if key in record["excluded"] else "kept, policy 'keep'", why)
