"""Rule data_montage: mid-slices of a few raw patients of one center."""

from pathlib import Path

from _common import logged

with logged(snakemake):
    from fedaudit.plots.montage import center_montage

    rows = [(p["name"], *(Path(p[k]) if p[k] else None for k in ("mr", "ct", "mask")))
            for p in snakemake.params.patients]
    center_montage(rows, Path(snakemake.output[0]),
                   title=f"Center {snakemake.wildcards.center}: raw MR | CT | mask")
