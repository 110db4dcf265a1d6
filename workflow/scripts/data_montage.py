"""Rule data_montage: mid-slices of a few raw patients of one center."""

from pathlib import Path

from _common import logged

with logged(snakemake) as log:
    from fedaudit.plots.montage import center_montage

    center_montage([Path(f) for f in snakemake.params.folders], Path(snakemake.output[0]),
                   title=f"Center {snakemake.wildcards.center}: raw MR | CT | mask")
