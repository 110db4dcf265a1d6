"""Rule head_mask: given or CT-derived head mask, checked against the registered MR."""

from _common import logged

with logged(snakemake):
    from fedaudit.preprocess.pipeline import mask_step
    from fedaudit.preprocess.quarantine import run_rule_step

    src, p = snakemake.params.source, snakemake.params
    run_rule_step(snakemake, "head_mask", lambda: mask_step(
        src["ct"], snakemake.input.mr, src["mask"], snakemake.output.mask,
        snakemake.output.record, threshold_hu=p.threshold_hu, min_coverage=p.min_coverage,
        min_mr_fill=p.min_mr_fill, mr_source=src["mr"], transform=snakemake.input.transform))
