# Per-center preprocessing (paper 000, "Datasets"), one rule per step, every step cached:
# register MR -> CT, head mask, N4 on the MR, then mask + normalise + resample to the cube, QC.
# Then patient-level splits per center.

PRE_ENV = "../envs/preprocess.yaml"


rule register:
    """Rigid mutual-information registration MR -> CT; the MR is resampled onto the CT grid."""
    input:
        raw_inputs,
    output:
        mr=keep("results/preprocessed/{center}/{patient}/steps/1_register/mr.nii.gz"),
        transform="results/preprocessed/{center}/{patient}/steps/1_register/rigid.tfm",
        record="results/preprocessed/{center}/{patient}/steps/1_register/registration.json",
    log:
        f"{LOGS}/register/{{center}}/{{patient}}.log",
    params:
        source=patient_source,
        backend=config["preprocess"]["registration"]["backend"],
        seed=config["seed"],
    # One thread: ITK's threaded metric sums make the result vary in the last bits (~1e-5 mm)
    # with more; single-threaded it is bit-reproducible, and patients run in parallel anyway.
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        PRE_ENV
    script:
        "../scripts/register.py"


rule head_mask:
    """The given or CT-derived head mask, cut to the MR's field of view, checked against the MR."""
    input:
        raw=raw_inputs,
        mr=rules.register.output.mr,
        transform=rules.register.output.transform,
    output:
        mask="results/preprocessed/{center}/{patient}/steps/2_mask/mask.nii.gz",
        record="results/preprocessed/{center}/{patient}/steps/2_mask/mask.json",
    log:
        f"{LOGS}/head_mask/{{center}}/{{patient}}.log",
    params:
        source=patient_source,
        threshold_hu=config["preprocess"]["mask"]["threshold_hu"],
        min_coverage=config["preprocess"]["mask"]["min_coverage"],
        min_mr_fill=config["preprocess"]["mask"]["min_mr_fill"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        PRE_ENV
    script:
        "../scripts/head_mask.py"


rule n4:
    """N4 bias-field correction of the registered MR within the head mask."""
    input:
        mr=rules.register.output.mr,
        mask=rules.head_mask.output.mask,
    output:
        mr=keep("results/preprocessed/{center}/{patient}/steps/3_n4/mr.nii.gz"),
        field=keep("results/preprocessed/{center}/{patient}/steps/3_n4/bias_field.nii.gz"),
        record="results/preprocessed/{center}/{patient}/steps/3_n4/n4.json",
    log:
        f"{LOGS}/n4/{{center}}/{{patient}}.log",
    params:
        **config["preprocess"]["n4"],
        # N4's result depends on its thread count (ITK's multi-threaded fit): the study's
        # count, not the job's (Snakemake scales a job's threads down to --cores), so a run
        # with fewer cores gives the same volumes and a changed count re-runs N4
        n4_threads=PRE_THREADS,
    threads: PRE_THREADS
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        PRE_ENV
    script:
        "../scripts/n4.py"


rule finalize:
    """Mask (CT -1000 HU, MR 0 outside), normalise the MR to [0, 1], resample all three to the cube."""
    input:
        raw=raw_inputs,
        mr=rules.n4.output.mr,
        mask=rules.head_mask.output.mask,
    output:
        # a volume is never empty (fedaudit.atomic verifies each write; this is Snakemake's check)
        mr=ensure("results/preprocessed/{center}/{patient}/mr.nii.gz", non_empty=True),
        ct=ensure("results/preprocessed/{center}/{patient}/ct.nii.gz", non_empty=True),
        mask=ensure("results/preprocessed/{center}/{patient}/mask.nii.gz", non_empty=True),
        record="results/preprocessed/{center}/{patient}/steps/4_finalize/finalize.json",
    log:
        f"{LOGS}/finalize/{{center}}/{{patient}}.log",
    params:
        source=patient_source,
        normalize=config["preprocess"]["normalize"],
        cube=config["preprocess"]["cube"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        PRE_ENV
    script:
        "../scripts/finalize.py"


rule qc:
    """Per-patient QC record (registration metric, N4 field range, mask volume, shape) and PNG."""
    input:
        mr=rules.finalize.output.mr,
        ct=rules.finalize.output.ct,
        mask=rules.finalize.output.mask,
        records=[
            rules.register.output.record,
            rules.head_mask.output.record,
            rules.n4.output.record,
            rules.finalize.output.record,
        ],
    output:
        record="results/preprocessed/{center}/{patient}/qc.json",
        png=report(
            "results/preprocessed/{center}/{patient}/qc.png",
            caption="../report/preprocess_qc.rst",
            category="Data",
            subcategory="Preprocessing QC",
            labels={"center": "{center}", "patient": "{patient}"},
        ),
    log:
        f"{LOGS}/qc/{{center}}/{{patient}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        PRE_ENV
    script:
        "../scripts/qc.py"


rule qc_table:
    """All patients' QC records in one table, outlier flags, who failed, who is excluded."""
    input:
        per_patient(rules.qc.output.record),
    output:
        table=report(
            "results/preprocessed/qc.tsv",
            caption="../report/qc_table.rst",
            category="Data",
            subcategory="Preprocessing QC",
        ),
        flags=QC_FLAGS,
    log:
        f"{LOGS}/qc_table.log",
    params:
        outlier_z=config["preprocess"]["qc"]["outlier_z"],
        policy=config["preprocess"]["qc"]["flagged"],
        # named in the record and on the front page; they were never preprocessed
        left_out=STUDY.excluded_by_config(),
        # what a patient who failed a step does to the study (the steps record it either way)
        on_error=config["preprocess"]["on_error"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        PRE_ENV
    script:
        "../scripts/qc_table.py"


rule splits:
    """Patient-level train/val/test split of one center (external centers: test only)."""
    input:
        lambda wc: per_patient(rules.qc.output.record, center=wc.center),
    output:
        "results/splits/{center}.json",
    log:
        f"{LOGS}/splits/{{center}}.log",
    params:
        patients=lambda wc: STUDY.patients(wc.center),
        role=lambda wc: STUDY.role(wc.center),
        seed=config["seed"],
        fractions=[config["splits"][k] for k in ("train", "val", "test")],
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        PRE_ENV
    script:
        "../scripts/splits.py"


rule preprocess_all:
    input:
        per_patient(rules.qc.output.png),
        rules.qc_table.output.table,
        expand(rules.splits.output[0], center=STUDY.centers()),
