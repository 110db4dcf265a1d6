"""Rule qc_table: every patient's QC record as one TSV row, per-center outlier flags, the
patients who failed preprocessing (preprocess.on_error), and the flagged / excluded patients
every later job reads (qc_flags.json)."""

from _common import logged

with logged(snakemake) as log:
    from fedaudit.atomic import write_csv
    from fedaudit.io import read_json, write_json
    from fedaudit.preprocess.outliers import apply_on_error, flags_record, qc_table, split_records

    p = snakemake.params
    records = [read_json(path) for path in snakemake.input]
    # on_error fail: the study stops here, naming every patient that failed at once
    failures = apply_on_error(split_records(records)[1], p.on_error)
    table = qc_table(records, threshold=p.outlier_z)
    write_csv(table, snakemake.output.table, sep="\t", index=False, float_format="%.4g")
    record = flags_record(table[table["failed_step"] == ""], policy=p.policy,
                          threshold=p.outlier_z, left_out=p.left_out, failed=failures)
    write_json(record, snakemake.output.flags)
    log.info("%d patients, %d flagged, %d failed preprocessing; left out by preprocess.exclude:"
             " %s", len(table), len(record["flagged"]), len(failures),
             ", ".join(record["left_out"]) or "none")
    for key, why in record["flagged"].items():
        log.warning("QC flag %s (%s): %s", key,
                    "excluded" if key in record["excluded"] else "kept, policy 'keep'", why)
    for key, why in failures.items():
        log.warning("left out (preprocess.on_error: exclude): %s failed at %s", key, why)
