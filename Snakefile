# FedAudit: security audit of federated brain MRI -> synthetic CT translation (FedSynthCT-Brain).
# Stages: demo data -> per-center preprocessing -> patient-level splits -> federated training per
# scenario -> evaluation in HU -> privacy attacks on the server log. The report stage is included
# as it lands.
from snakemake.utils import min_version

min_version("9.0")

# The demo config is the default; a --configfile on the command line replaces it (a deep merge of
# a real-data config into the demo one would mix sources).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/attacks.smk"


rule all:
    input:
        rules.data_all.input,
        rules.preprocess_all.input,
        rules.evaluate_all.input,
        rules.attacks_all.input,
    default_target: True
