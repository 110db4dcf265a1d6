"""Rule register: rigid MI registration MR -> CT (fedaudit.preprocess.register)."""

from _common import logged

with logged(snakemake):
    from fedaudit.preprocess.pipeline import register_step
    from fedaudit.preprocess.quarantine import run_rule_step

    src, out = snakemake.params.source, snakemake.output
    run_rule_step(snakemake, "register", lambda: register_step(
        src["mr"], src["ct"], out.mr, out.transform, out.record,
        backend=snakemake.params.backend, seed=snakemake.params.seed, threads=snakemake.threads))
