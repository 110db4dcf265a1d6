"""Rule qc: per-patient QC record and PNG of the final cube."""

from _common import logged

with logged(snakemake):
    from fedaudit.io import read_volume, write_json
    from fedaudit.plots.qc import qc_png
    from fedaudit.preprocess.pipeline import qc_record

    wc, inp = snakemake.wildcards, snakemake.input
    mr, ct, mask = (read_volume(inp.mr, "final MR"), read_volume(inp.ct, "final CT"),
                    read_volume(inp.mask, "final mask"))
    record = qc_record(wc.center, wc.patient, mr, ct, mask, inp.records)
    qc_png(mr, ct, mask, snakemake.output.png,
           title=f"{wc.center}/{wc.patient}: preprocessed cube")
    write_json(record, snakemake.output.record)
