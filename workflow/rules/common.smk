# Config validation, the study (centers, patients, sources) and shared helpers.
import sys
from types import SimpleNamespace
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from fedaudit.config import ConfigError, Study, validate_config  # noqa: E402

try:
    _validated = validate_config(config)
except ConfigError as _err:
    raise WorkflowError(str(_err)) from None
# Mutate in place: scripts receive workflow.config, which is this same dict.
config.clear()
config.update(_validated)

STUDY = Study(config)
try:
    ALL_PATIENTS = STUDY.all_patients()
except ConfigError as _err:
    raise WorkflowError(str(_err)) from None

LOGS = "results/logs"
# Flagged / excluded patients, written by qc_table; every job that uses patients reads it.
QC_FLAGS = "results/preprocessed/qc_flags.json"


def any_of(names):
    """Wildcard constraint matching exactly these names (nothing when the list is empty)."""
    import re

    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


from fedaudit.data.demo import CENTER_PROFILES  # noqa: E402

DEMO_CENTERS_WITH_MASK = any_of(
    sorted(c for c, p in CENTER_PROFILES.items() if p.ships_mask)
)
DEMO_CENTERS_WITHOUT_MASK = any_of(
    sorted(c for c, p in CENTER_PROFILES.items() if not p.ships_mask)
)
PRE_THREADS = config["preprocess"]["threads"]


wildcard_constraints:
    center="[A-Za-z0-9_-]+",
    patient="[A-Za-z0-9_.-]+",


def keep(path):
    """Intermediate per-step volumes are temp() unless preprocess.keep_intermediate."""
    return path if config["preprocess"]["keep_intermediate"] else temp(path)


def patient_source(wildcards):
    """Raw file paths as plain strings (params are unpickled before fedaudit is importable)."""
    src = STUDY.source(wildcards.center, wildcards.patient)
    return {"mr": str(src.mr), "ct": str(src.ct), "mask": str(src.mask) if src.mask else None}


def raw_inputs(wildcards):
    """Raw MR/CT/mask that exist (or that a rule makes); a missing one fails its own job."""
    src = STUDY.source(wildcards.center, wildcards.patient)
    if src.demo:  # made by the demo rules, so they need not exist yet
        return [str(f) for f in (src.mr, src.ct, src.mask) if f]
    return src.existing_inputs()


def per_patient(pattern, center=None):
    pairs = [(c, p) for c, p in ALL_PATIENTS if center in (None, c)]
    return [pattern.format(center=c, patient=p) for c, p in pairs]


MONTAGE_ROWS = 4  # patients shown per center in the raw-data montage


def _montage_wildcards(wildcards):
    return [
        SimpleNamespace(center=wildcards.center, patient=p)
        for p in STUDY.patients(wildcards.center)[:MONTAGE_ROWS]
    ]


def montage_inputs(wildcards):
    return [f for wc in _montage_wildcards(wildcards) for f in raw_inputs(wc)]


def montage_patients(wildcards):
    """Name and raw file paths (plain strings) of the patients shown in a center's montage."""
    return [{"name": wc.patient, **patient_source(wc)} for wc in _montage_wildcards(wildcards)]


# Splits are a pure function of (patients, seed, fractions): computing them here lets training
# depend on exactly its train/val volumes; the splits rule writes the same records to disk.
from fedaudit.splits import split_center  # noqa: E402
from fedaudit.scenarios import (  # noqa: E402
    evaluated,
    membership_control,
    result_settings,
    scenarios_from_config,
)
from fedaudit.federation.aggregation import trims_to_median  # noqa: E402

SPLITS = {
    c: split_center(
        STUDY.patients(c),
        center=c,
        role=STUDY.role(c),
        seed=config["seed"],
        fractions=[config["splits"][k] for k in ("train", "val", "test")],
    )
    for c in STUDY.centers()
}
SCENARIOS = scenarios_from_config(config)
# The scenarios whose synthesis is evaluated (controls are only trained and attacked).
EVALUATED = evaluated(SCENARIOS)
MEMBERSHIP_CONTROL = membership_control(SCENARIOS)
TRAIN_CENTERS = STUDY.centers("train")


def preprocessed(center, patient):
    root = f"results/preprocessed/{center}/{patient}"
    return [f"{root}/mr.nii.gz", f"{root}/ct.nii.gz", f"{root}/mask.nii.gz"]


# (center, patient) of every training center's train split (what the constant predictor learns).
TRAIN_SPLIT = [(c, p) for c in TRAIN_CENTERS for p in SPLITS[c]["train"]]
# (center, patient) of every training center's train and validation patients.
TRAINING_PATIENTS = [(c, p) for c in TRAIN_CENTERS for p in SPLITS[c]["train"] + SPLITS[c]["val"]]


def training_volumes(wildcards=None):
    """Preprocessed train and validation volumes of every training center."""
    return [f for c, p in TRAINING_PATIENTS for f in preprocessed(c, p)]


def test_patients():
    """(center, patient) of every test set: A-D test splits and all of the external centers."""
    return [(c, p) for c in STUDY.centers() for p in SPLITS[c]["test"]]


SCT_PATTERN = "results/eval/{scenario}/sct/{center}/{patient}.nii.gz"
# The constant predictor, written by constant_predictor: its value, which the training curves
# draw, and its metrics, which every table puts beside the scenarios'.
CONSTANT_VALUE = "results/eval/constant/constant.json"
CONSTANT_METRICS = "results/eval/constant/metrics.csv"


def sct_files(scenario):
    return [SCT_PATTERN.format(scenario=scenario, center=c, patient=p) for c, p in test_patients()]


EXTERNAL_CENTERS = [c for c in STUDY.centers() if c not in TRAIN_CENTERS]


def train_priority(wildcards):
    """Training (the longest jobs) goes before everything downstream, so the short attack and
    report jobs fill the cores it leaves free instead of a lone training job ending the run with
    the other core idle (seen on the demo: two minutes); the federations the attacks read train
    first. DLG_SCENARIOS and FEDMIA_SCENARIOS come from attacks.smk, read when jobs are planned."""
    s = wildcards.scenario
    # the membership control is the longest federation (40 local epochs): it starts first
    longest = 4 * (SCENARIOS[s].control is not None)
    return 10 + 2 * (s in DLG_SCENARIOS) + (s in FEDMIA_SCENARIOS) + longest


def fedmia_patients():
    """The FedMIA attacker's candidate patients: every patient of every center (it does not
    know which are members; the evaluator does). Validation patients were never trained on:
    they are same-center non-members like the test patients."""
    return [(c, p) for c in STUDY.centers() for k in ("train", "val", "test") for p in SPLITS[c][k]]


def scenario_train(scenario):
    """The train settings a scenario's federation used (its own overrides included)."""
    return result_settings(config["train"], SCENARIOS[scenario])


def fedmia_rounds(wildcards):
    """FedMIA's rounds for one scenario (FEDMIA comes from attacks.smk): the control may train a
    different number of rounds, so a numbered round, which is the study's, becomes its last."""
    rounds = FEDMIA["rounds"]
    if SCENARIOS[wildcards.scenario].control and rounds not in ("last", "all"):
        return "last"
    return rounds


# Report stage (report.smk): outputs marked for `snakemake --report` and the inputs of its
# figures. They read TABLES, SCT_ROWS, ... which report.smk defines before calling them.


def table_outputs(name):
    out = {fmt: f"{TABLES}/{name}.{fmt}" for fmt in TABLE_FORMATS}
    category, subcategory = TABLE_CATEGORY[name]
    out["html"] = report(
        out["html"],
        caption=f"../report/table_{name}.rst",
        category=category,
        subcategory=subcategory,
        labels={"table": name},
    )
    return out


def sct_comparison_inputs(wildcards=None):
    scenarios = [s for _, *pair in SCT_ROWS for s in pair if s]
    return {
        "metrics": f"results/eval/{SCT_REFERENCE}/metrics.csv",
        "sct": [
            SCT_PATTERN.format(scenario=s, center=c, patient=p)
            for s in scenarios
            for c, p in SCT_CANDIDATES
        ],
        "volumes": [f for c, p in SCT_CANDIDATES for f in preprocessed(c, p)],
    }


def report_items(wildcards=None):
    """Every table and figure this configuration produces (the outputs of the report rules)."""
    items = [f for name in TABLE_NAMES for f in getattr(rules, f"table_{name}").output]
    items += expand(rules.figure_training.output[0], scenario=list(SCENARIOS))
    if POISONED:
        items += rules.figure_poisoning.output
    if SCT_ROWS and SCT_REFERENCE:
        items += rules.figure_sct.output
    if FEDMIA_SCENARIOS:
        items += rules.figure_fedmia_roc.output
    items += expand(
        rules.figure_dlg.output[0], scenario=DLG_SCENARIOS, optimizer=DLG["optimizers"]
    )
    return items
