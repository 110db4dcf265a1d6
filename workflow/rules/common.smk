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


def _center_regex(names):
    # A regex that matches no center when the list is empty.
    return "|".join(names) if names else "(?!x)x"


from fedaudit.data.demo import CENTER_PROFILES  # noqa: E402

DEMO_CENTERS_WITH_MASK = _center_regex(
    sorted(c for c, p in CENTER_PROFILES.items() if p.ships_mask)
)
DEMO_CENTERS_WITHOUT_MASK = _center_regex(
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


def montage_inputs(wildcards):
    patients = STUDY.patients(wildcards.center)[:4]
    files = []
    for p in patients:
        src = STUDY.source(wildcards.center, p)
        files += raw_inputs(SimpleNamespace(center=wildcards.center, patient=p))
    return files


def montage_patients(wildcards):
    """Name and raw file paths (plain strings) of the patients shown in a center's montage."""
    out = []
    for p in STUDY.patients(wildcards.center)[:4]:
        src = patient_source(SimpleNamespace(center=wildcards.center, patient=p))
        out.append({"name": p, **src})
    return out
