# Input data: the embedded demo generator and a per-center montage of the raw volumes.


rule demo_patient:
    """Synthetic paired MR/CT for one patient of one center, with ground truth beside it."""
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
        "../../envs/data.yaml"
    script:
        "../scripts/demo_patient.py"


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
        folders=lambda wc: [
            str(STUDY.source(wc.center, p).mr.parent) for p in STUDY.patients(wc.center)[:4]
        ],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/data_montage.py"


rule data_all:
    input:
        expand("results/data/montage/{center}.png", center=STUDY.centers()),
