# Comparisons (fedaudit.comparisons): figures that read several attacks' and defenses' results.
# Included after every attack's rules, whose outputs they read.


localrules:
    figure_privacy_utility,


rule figure_privacy_utility:
    """Utility against attack success, one point per noise level, ε as labels."""
    input:
        table=rules.table_privacy_utility.output.csv,
    output:
        report(
            f"{FIGURES}/privacy_utility.png",
            caption="../report/figure_privacy_utility.rst",
            category="Privacy",
            subcategory="Noise defenses: privacy-utility",
        ),
    log:
        f"{LOGS}/report/figure_privacy_utility.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENVS["report"]
    script:
        "../scripts/figure_privacy_utility.py"


if GRADINV_SCENARIOS:
    register_outputs(figures=rules.figure_privacy_utility.output)
