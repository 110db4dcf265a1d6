"""Rule figure_sct: the paper 000 Fig. 4 comparison for a representative test patient."""

from _common import logged

with logged(snakemake) as log:
    import pandas as pd

    from fedaudit.plots.sct import sct_comparison_figure
    from fedaudit.report.selection import representative_patient

    p = snakemake.params
    center, patient = representative_patient(pd.read_csv(snakemake.input.metrics),
                                             [tuple(c) for c in p.candidates])

    def sct(scenario):
        return (p.sct_pattern.format(scenario=scenario, center=center, patient=patient)
                if scenario else None)

    rows = [(label, sct(fedavg), sct(fedmedian)) for label, fedavg, fedmedian in p.rows]
    _mr, ct, mask = p.volumes[f"{center}/{patient}"]  # as preprocessed() lists them
    drawn = sct_comparison_figure(ct, mask, rows,
                                  snakemake.output[0],
                                  title=f"sCT of {center}/{patient} under poisoning, "
                                        f"γ = {p.gamma:.1f}")
    log.info("patient %s/%s (median MAE of %d candidates), axial slice %s", center, patient,
             len(p.candidates), drawn["slice_index"])
