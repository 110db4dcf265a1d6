"""Rule demo_patient: synthetic paired MR/CT for one patient (fedaudit.data.demo)."""

from pathlib import Path

from _common import logged

with logged(snakemake) as log:
    from fedaudit.data.demo import generate_patient, patient_id
    from fedaudit.data.phantom import use_template_file

    use_template_file(snakemake.input.template)  # built once by rule demo_template

    center, patient = snakemake.wildcards.center, snakemake.wildcards.patient
    index = next(i for i in range(10_000) if patient_id(center, i) == patient)
    truth = generate_patient(center, index, snakemake.params.seed, Path(snakemake.output.mr).parent,
                             resolution_scale=snakemake.params.resolution_scale)
    log.info("generated %s/%s", center, patient)
