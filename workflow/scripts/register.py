"""Rule register: rigid MI registration MR -> CT (fedaudit.preprocess.register)."""

from _common import logged

with logged(snakemake):
    from fedaudit.preprocess.pipeline import register_step

    src, out = snakemake.params.source, snakemake.output
    register_step(src["mr"], src["ct"], out.mr, out.transform, out.record,
                  backend=snakemake.params.backend, seed=snakemake.params.seed,
                  threads=snakemake.threads)
