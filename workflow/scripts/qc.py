"""Rule qc: per-patient QC record and PNG of the final cube (or of why there is none)."""

from _common import logged

with logged(snakemake):
    from fedaudit.io import read_volume, write_json
    from fedaudit.plots.qc import failed_png, qc_png
    from fedaudit.preprocess.pipeline import qc_record
    from fedaudit.preprocess.quarantine import run_rule_step

    wc, inp, out = snakemake.wildcards, snakemake.input, snakemake.output

    def qc() -> None:
        mr, ct, mask = (read_volume(inp.mr, "final MR"), read_volume(inp.ct, "final CT"),
                        read_volume(inp.mask, "final mask"))
        record = qc_record(wc.center, wc.patient, mr, ct, mask, inp.records)
        qc_png(mr, ct, mask, out.png, title=f"{wc.center}/{wc.patient}: preprocessed cube")
        write_json(record, out.record)

    # the figure says why this patient has no cube (the record is the quarantine record)
    run_rule_step(snakemake, "qc", qc, outputs=[out.record],
                  on_failure=lambda rec: failed_png(rec, out.png))
