"""Rule figure_training: one scenario's training curves (loss, validation MAE per round)."""

from _common import logged

with logged(snakemake) as log:
    import pandas as pd

    from fedaudit.plots.training import training_curves_figure

    history = pd.read_csv(snakemake.input.history, sep="\t")
    pooled = training_curves_figure(history, snakemake.output[0],
                                    scenario=snakemake.wildcards.scenario,
                                    poisoned=snakemake.params.poisoned,
                                    loss=snakemake.params.loss)
    log.info("pooled validation MAE per round:\n%s", pooled.to_string(index=False))
