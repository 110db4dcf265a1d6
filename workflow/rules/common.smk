# Config validation, the study (centers, patients, sources) and shared helpers.
import sys
from types import SimpleNamespace
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from fedaudit.catalog import catalog  # noqa: E402
from fedaudit.config import ConfigError, Study, validate_config  # noqa: E402

try:
    _validated = validate_config(config)
except ConfigError as _err:
    raise WorkflowError(str(_err)) from None
# Mutate in place: scripts receive workflow.config, which is this same dict.
config.clear()
config.update(_validated)

STUDY = Study(config)
# The threat catalog (fedaudit.catalog): built-in plugins and the config's plugin folders.
CATALOG = catalog(config["plugins"])
# What plugin rules run (their logic is in the plugin's steps module, fedaudit.catalog.run_step)
# and the generic table builder; absolute, because plugin rule files live in their own folders.
STEP_SCRIPT = str(Path(workflow.basedir) / "workflow" / "scripts" / "step.py")
TABLE_SCRIPT = str(Path(workflow.basedir) / "workflow" / "scripts" / "table.py")
CONDA_ENVS = {p.stem: str(p) for p in (Path(workflow.basedir) / "workflow" / "envs").glob("*.yaml")}
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


from fedaudit.data.centers import CENTER_PROFILES  # noqa: E402

DEMO_CENTERS_WITH_MASK = any_of(sorted(c for c, p in CENTER_PROFILES.items() if p.ships_mask))
DEMO_CENTERS_WITHOUT_MASK = any_of(
    sorted(c for c, p in CENTER_PROFILES.items() if not p.ships_mask)
)
PRE_THREADS = config["preprocess"]["threads"]
# How jobs run (threads, device, training backend): never a param, so changing it re-runs nothing
EXECUTION = config["execution"]


wildcard_constraints:
    center="[A-Za-z0-9_-]+",
    # ids are path components: never '.', '..' or hidden (fedaudit.config._SAFE_ID)
    patient="[A-Za-z0-9_-][A-Za-z0-9_.-]*",


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
    is_noise,
    evaluated,
    membership_control,
    replicas,
    result_settings,
    scenarios_from_config,
    training_seeds,
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
# the training seeds of the replicated federations, the study's seed first (config seeds)
TRAINING_SEEDS = training_seeds(config)


def with_replicas(names):
    """``names`` and, after each, its replicas of the config's further ``seeds`` (an attack
    that reads every seed: FedMIA)."""
    return replicas(SCENARIOS, names)


def seed_runs(name):
    """A federation's training runs, (seed, scenario), the study's seed first; None without
    the config's ``seeds`` (one run per federation): a table's param, so the tables of a
    one-seed study stay as they were."""
    if config["seeds"] is None:
        return None
    return [(TRAINING_SEEDS[0], name)] + [
        (SCENARIOS[r].seed, r) for r in replicas(SCENARIOS, [name])[1:]
    ]


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


def split_folders(split, centers):
    """center -> the preprocessed folders of its patients in one split."""
    return {c: [f"results/preprocessed/{c}/{p}" for p in SPLITS[c][split]] for c in centers}


def update_noise(scenario):
    """A scenario's defense entries that change what its clients send (the update noise)."""
    return [d for d in SCENARIOS[scenario].defenses if is_noise(d["name"])]


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
    first (ATTACKED is filled by the plugins' rule files, read when jobs are planned)."""
    s = wildcards.scenario
    # the membership control is the longest federation (40 local epochs): it starts first
    longest = 4 * (SCENARIOS[s].control is not None)
    return 10 + 2 * sum(s in scenarios for scenarios in ATTACKED.values()) + longest


def scenario_train(scenario):
    """The train settings a scenario's federation used (its own overrides included)."""
    return result_settings(config["train"], SCENARIOS[scenario])


# Results people read: tables under results/tables/, figures under results/figures/, each marked
# for `snakemake --report`. Plugin rule files register what they produce in these lists; the
# report rules (report.smk) and attacks_all read them.
TABLES = "results/tables"
FIGURES = "results/figures"
TABLE_FORMATS = ("csv", "md", "tex", "html")
REPORT_TABLES = []  # table names (fedaudit.catalog.TableSpec) whose table_<name> rule runs
REPORT_FIGURES = []  # figure files for the report
ATTACK_OUTPUTS = []  # each enabled attack's summary outputs (rule attacks_all)
ATTACKED = {}  # attack name -> scenarios whose federation it reads


def register_outputs(outputs=(), tables=(), figures=()):
    """A plugin's one call to register what it produces (CONTRIBUTING.md, "The workflow's names
    for plugins"): its summary ``outputs`` (rule attacks_all), the ``tables`` whose
    table_<name> rules run and the ``figures`` the report shows, in the order given."""
    ATTACK_OUTPUTS.extend(outputs)
    REPORT_TABLES.extend(tables)
    REPORT_FIGURES.extend(figures)


# paper 000's scenarios as plain dicts (params are unpickled before fedaudit is importable)
SCENARIO_META = {name: s.as_dict() for name, s in SCENARIOS.items()}


def table_outputs(name, caption):
    """The outputs of the table_<name> job -- CSV, Markdown, LaTeX and the report's HTML in the
    report category its TableSpec names; ``caption`` is relative to the calling rules file."""
    # a table file is never empty (the writers verify each write; this is Snakemake's check)
    out = {fmt: ensure(f"{TABLES}/{name}.{fmt}", non_empty=True) for fmt in TABLE_FORMATS}
    spec = CATALOG.tables[name]
    out["html"] = report(
        out["html"],
        caption=caption,
        category=spec.category,
        subcategory=spec.subcategory,
        labels={"table": name},
    )
    return out


def report_items(wildcards=None):
    """Every table and figure this configuration produces (the outputs of the report rules)."""
    items = [f for name in REPORT_TABLES for f in getattr(rules, f"table_{name}").output]
    items += expand(rules.figure_training.output[0], scenario=list(SCENARIOS))
    return items + REPORT_FIGURES
