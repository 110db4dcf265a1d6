"""Rule splits: patient-level train/val/test split of one center."""

from _common import logged

with logged(snakemake) as log:
    from fedaudit.io import write_json
    from fedaudit.splits import split_center

    p = snakemake.params
    split = split_center(p.patients, center=snakemake.wildcards.center, role=p.role, seed=p.seed,
                         fractions=p.fractions)
    write_json({"center": snakemake.wildcards.center, "role": p.role, "seed": p.seed, **split},
               snakemake.output[0])
    log.info("%s", {k: len(v) for k, v in split.items()})
