"""Rule figure_dlg: the DLG reconstruction evolution of one scenario and optimiser (Fig. 2)."""

from _common import logged

with logged(snakemake) as log:
    from fedaudit.plots.dlg import dlg_evolution_figure

    wc = snakemake.wildcards
    results = dict(zip(snakemake.params.centers, snakemake.input.results, strict=True))
    dlg_evolution_figure(results, snakemake.output[0],
                         f"DLG reconstruction, {wc.scenario}, {wc.optimizer}")
    log.info("evolution figure %s (%d centers)", snakemake.output[0], len(results))
