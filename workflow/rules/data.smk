# Input data: the embedded demo generator and a per-center montage of the raw volumes.


rule demo_template:
    """The demo's head model: the MNI brain on the model grid, built once for every patient."""
    output:
        "results/data/demo/template_brain.npz",
    log:
        f"{LOGS}/demo_template.log",
    params:
        resolution_scale=config["demo"]["resolution_scale"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/demo_template.py"


rule demo_patient:
    """Synthetic paired MR/CT for one patient of one center, with ground truth beside it."""
    wildcard_constraints:
        center=DEMO_CENTERS_WITHOUT_MASK,
    input:
        template=rules.demo_template.output[0],
    output:
        mr="results/data/demo/{center}/{patient}/mr.nii.gz",
        ct="results/data/demo/{center}/{patient}/ct.nii.gz",
        truth="results/data/demo/{center}/{patient}/truth/truth.json",
    log:
        f"{LOGS}/demo_patient/{{center}}/{{patient}}.log",
    params:
        seed=config["seed"],
        resolution_scale=config["demo"]["resolution_scale"],
    threads: 1
    resources:
        mem_mb=3000,
        runtime=15,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/demo_patient.py"


use rule demo_patient as demo_patient_with_mask with:
    # Centers modelled on SynthRAD2023 (D, E) ship a head mask, like the real challenge data.
    wildcard_constraints:
        center=DEMO_CENTERS_WITH_MASK,
    output:
        mr="results/data/demo/{center}/{patient}/mr.nii.gz",
        ct="results/data/demo/{center}/{patient}/ct.nii.gz",
        mask="results/data/demo/{center}/{patient}/mask.nii.gz",
        truth="results/data/demo/{center}/{patient}/truth/truth.json",


rule data_montage:
    """Mid-slices of the raw MR | CT | mask of a few patients per center (report figure)."""
    input:
        montage_inputs,
    output:
        report(
            "results/data/montage/{center}.png",
            caption="../report/data_montage.rst",
            category="Data",
            subcategory="Raw inputs",
            labels={"center": "{center}"},
        ),
    log:
        f"{LOGS}/data_montage/{{center}}.log",
    params:
        patients=montage_patients,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/data_montage.py"


rule data_all:
    input:
        expand(rules.data_montage.output[0], center=STUDY.centers()),
