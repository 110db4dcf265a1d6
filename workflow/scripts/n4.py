"""Rule n4: N4 bias-field correction of the registered MR within the head mask."""

from _common import logged

with logged(snakemake):
    from fedaudit.preprocess.pipeline import n4_step
    from fedaudit.preprocess.quarantine import run_rule_step

    p, out = snakemake.params, snakemake.output
    run_rule_step(snakemake, "n4", lambda: n4_step(
        snakemake.input.mr, snakemake.input.mask, out.mr, out.field, out.record,
        backend=p.backend, shrink=p.shrink, iterations=p.iterations, tolerance=p.tolerance,
        threads=p.n4_threads))
