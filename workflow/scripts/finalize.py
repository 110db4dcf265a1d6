"""Rule finalize: mask, normalise the MR to [0, 1], resample MR/CT/mask to the cube."""

from _common import logged

with logged(snakemake):
    from fedaudit.preprocess.pipeline import finalize_step
    from fedaudit.preprocess.quarantine import run_rule_step

    out = snakemake.output
    run_rule_step(snakemake, "finalize", lambda: finalize_step(
        snakemake.params.source["ct"], snakemake.input.mr, snakemake.input.mask,
        out.mr, out.ct, out.mask, out.record,
        normalize=snakemake.params.normalize, cube=snakemake.params.cube))
