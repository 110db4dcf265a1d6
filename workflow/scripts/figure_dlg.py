"""Rule figure_dlg: the DLG reconstruction evolution of one scenario and optimiser (Fig. 2)."""

from _common import logged

with logged(snakemake) as log:
    from fedaudit.plots.dlg import dlg_evolution_figure
    from fedaudit.report.tables import OPTIMIZERS

    wc = snakemake.wildcards
    results = dict(zip(snakemake.params.centers, snakemake.input.results, strict=True))
    dlg_evolution_figure(results, snakemake.output[0],
                         f"DLG reconstruction, scenario {wc.scenario}, "
                         f"{OPTIMIZERS.get(wc.optimizer, wc.optimizer)}")
    log.info("evolution figure %s (%d centers)", snakemake.output[0], len(results))
