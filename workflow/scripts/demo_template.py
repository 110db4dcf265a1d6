"""Rule demo_template: the demo's template brain, built once per study instead of per patient
(fedaudit.data.phantom)."""

from _common import logged

with logged(snakemake) as log:
    from fedaudit.data.demo import model_spacing
    from fedaudit.data.phantom import build_template_brain, save_template

    spacing = model_spacing(snakemake.params.resolution_scale)
    save_template(build_template_brain(spacing), snakemake.output[0])
    log.info("template brain at %.1f mm: %s", spacing, snakemake.output[0])
