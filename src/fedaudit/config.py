"""Load and validate the workflow config; derive centers, patients and their input files.

The JSON schema in ``workflow/schemas/config.schema.yaml`` is the single description of every key
(with defaults and descriptions). Validation happens before any job is planned, and errors name
the key path (``preprocess.cube.size``) so a typo never silently falls back to a default.
"""

from __future__ import annotations

import copy
import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from fedaudit.catalog import (
    NOISE_GRID,
    SCHEMA_PATH,
    CatalogError,
    SettingError,
    assemble_schema,
    catalog,
    read_schema,
    resolve,
)
from fedaudit.io import find_volume

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = "results"
DEMO_ROOT = f"{RESULTS}/data/demo"
# An id that becomes a path component (a patient folder, a scenario name): letters, digits, '.',
# '-', '_', not starting with '.', so '.', '..' and hidden names can never climb or hide.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


class ConfigError(ValueError):
    """A config (or a file it points to) that cannot be used; the message names key or file."""


# --------------------------------------------------------------------------- schema validation


def load_schema(path: Path = SCHEMA_PATH, plugins: Iterable[str | Path] = ()) -> dict[str, Any]:
    """The config schema with every registered plugin's fragment mounted
    (:func:`fedaudit.catalog.assemble_schema`): the built-in ones and those in ``plugins``."""
    return assemble_schema(read_schema(path), catalog(plugins))


def _plugin_folders(raw: dict[str, Any]) -> list[str]:
    """The config's ``plugins`` list, checked before the rest (it shapes the schema)."""
    folders = raw.get("plugins", [])
    if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
        raise ConfigError("invalid FedAudit config:\n  - config key 'plugins': must be a list "
                          "of plugin folder paths")
    try:
        catalog(folders)
    except CatalogError as err:
        raise ConfigError(f"invalid FedAudit config:\n  - config key 'plugins': {err}") from None
    return folders


def _key_path(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """Turn a jsonschema error into one line a user can act on."""
    where = _key_path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        prefix = f"{where}." if error.absolute_path else ""
        keys = ", ".join(f"'{prefix}{k}'" for k in unknown)
        return f"unknown config key {keys} (allowed here: {', '.join(allowed)})"
    if error.validator == "oneOf" and isinstance(error.instance, dict):
        kind = error.instance.get("type")
        branches = [b.get("properties", {}).get("type", {}).get("const")
                    for b in error.validator_value]
        if kind not in branches:
            return f"config key '{where}.type' is {kind!r}; expected one of {branches}"
        # Report the problem inside the branch the user meant (the one whose `type` matches).
        for sub in sorted(error.context or [], key=lambda e: len(e.absolute_path)):
            if sub.validator == "const":
                continue
            branch_schema = error.validator_value[sub.schema_path[0]]
            if branch_schema.get("properties", {}).get("type", {}).get("const") == kind:
                return _describe(sub)
    if error.validator == "required":
        return f"config key '{where}' is missing a required entry: {error.message}"
    return f"config key '{where}': {error.message}"


def _fill_defaults(schema: dict[str, Any], instance: Any, root: dict[str, Any]) -> None:
    if "$ref" in schema:
        ref = schema["$ref"].removeprefix("#/").split("/")
        target: Any = root
        for part in ref:
            target = target[part]
        _fill_defaults(target, instance, root)
        return
    if "oneOf" in schema:
        for branch in schema["oneOf"]:
            if jsonschema.Draft202012Validator(branch).is_valid(instance):
                _fill_defaults(branch, instance, root)
                return
    if not isinstance(instance, dict):
        return
    props = schema.get("properties", {})
    for key, sub in props.items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(sub, instance[key], root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in props:
                _fill_defaults(extra, value, root)


# Keys that moved to ``execution`` (how a job runs, not what it computes): an old config gets an
# error naming the new place instead of "unknown key".
MOVED_KEYS = {
    **{("train", k): f"execution.train.{k}" for k in
       ("device", "threads", "num_workers", "backend", "ray", "deployment", "keep_checkpoints")},
    ("evaluate", "threads"): "execution.evaluate.threads",
    ("attacks", "device"): "execution.attacks.device",
    ("attacks", "threads"): "execution.attacks.threads",
}


def _moved(raw: dict[str, Any]) -> list[str]:
    return [f"config key '{section}.{key}' has moved to '{new}' (settings that re-run nothing "
            "live in execution; config/README.md, \"execution\")"
            for (section, key), new in MOVED_KEYS.items()
            if isinstance(raw.get(section), dict) and key in raw[section]]


def validate_config(raw: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``raw`` against the schema and return a copy with defaults filled in.

    Raises ConfigError listing every problem, one per line, each naming its key.
    """
    moved = _moved(raw)
    if moved:
        raise ConfigError("invalid FedAudit config:\n" + "\n".join(f"  - {m}" for m in moved))
    config = copy.deepcopy(dict(raw))
    schema = schema or load_schema(plugins=_plugin_folders(config))
    validator = jsonschema.Draft202012Validator(schema)
    config = _coerce(config, schema, schema, validator)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n".join(f"  - {_describe(e)}" for e in errors)
        raise ConfigError(f"invalid FedAudit config:\n{lines}")
    _fill_defaults(schema, config, schema)
    _check_semantics(config)
    return config


def _subschema(node: Any, root: dict[str, Any]) -> dict[str, Any]:
    """``node`` with a local ``$ref`` (``#/$defs/...``) followed, the rest of it kept."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) \
            and node["$ref"].startswith("#/"):
        target: Any = root
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node if isinstance(node, dict) else {}


def _branches(node: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    """``node`` and the schemas of its ``oneOf`` / ``anyOf`` / ``allOf`` branches."""
    out = [node]
    for key in ("oneOf", "anyOf", "allOf"):
        out += [_subschema(b, root) for b in node.get(key, [])]
    return out


def _coerce(value: Any, node: Any, root: dict[str, Any],
            validator: jsonschema.Draft202012Validator) -> Any:
    """``value`` with every string the schema does not accept replaced by its YAML reading when
    the schema accepts that: Snakemake hands nested ``--config`` values over as strings
    (``--config train='{rounds: 5}'`` gives ``{'rounds': '5'}``). A string the schema accepts
    as it is (an id like ``"001"``) stays a string."""
    node = _subschema(node, root)
    if isinstance(value, dict):
        out = dict(value)
        for key, child in value.items():
            for branch in _branches(node, root):
                props = branch.get("properties", {})
                extra = branch.get("additionalProperties")
                sub = props.get(key, extra if isinstance(extra, dict) else None)
                if sub is not None:
                    out[key] = _coerce(child, sub, root, validator)
                    if out[key] is not child:
                        break
        return out
    if isinstance(value, list):
        items = node.get("items")
        return [_coerce(v, items, root, validator) for v in value] if isinstance(items, dict) \
            else value
    if not isinstance(value, str) or not node:
        return value
    check = validator.evolve(schema={**node, "$defs": root.get("$defs", {})})
    if check.is_valid(value):
        return value
    for read in (yaml.safe_load, int, float):  # YAML 1.1 reads "2e-3" as a string
        try:
            parsed = read(value)
        except (yaml.YAMLError, ValueError):
            continue
        if isinstance(parsed, (dict, list)):
            parsed = _coerce(parsed, node, root, validator)
        if parsed != value and check.is_valid(parsed):
            return parsed
    return value


def _check_semantics(config: dict[str, Any]) -> None:
    centers = config["centers"]
    if not any(c["role"] == "train" for c in centers.values()):
        raise ConfigError("invalid FedAudit config:\n  - config key 'centers': no center has "
                          "role 'train'; federated training needs at least one")
    s = config["splits"]
    total = s["train"] + s["val"] + s["test"]
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"invalid FedAudit config:\n  - config key 'splits': train + val + test "
                          f"= {total:g}, must be 1")
    pct = config["preprocess"]["normalize"]["percentiles"]
    if pct[0] >= pct[1]:
        raise ConfigError("invalid FedAudit config:\n  - config key "
                          f"'preprocess.normalize.percentiles': {pct} must be increasing")
    demo_centers = [c for c, v in centers.items() if v["source"]["type"] == "demo"]
    if demo_centers:
        from fedaudit.data.centers import CENTER_PROFILES

        unknown = [c for c in demo_centers if c not in CENTER_PROFILES]
        if unknown:
            raise ConfigError(
                f"invalid FedAudit config:\n  - config key 'centers.{unknown[0]}.source': demo "
                f"data exists for centers {', '.join(sorted(CENTER_PROFILES))} only")
    seeds = config["seeds"]
    if isinstance(seeds, list) and seeds[0] != config["seed"]:
        raise ConfigError(f"invalid FedAudit config:\n  - config key 'seeds': {seeds} must "
                          f"start with the study's seed (seed: {config['seed']}), which also "
                          "draws the demo data and the splits; e.g. --config "
                          f"seed={seeds[0]}, or a count: seeds={len(seeds)}")
    size = config["preprocess"]["cube"]["size"]
    if size % 16:
        raise ConfigError("invalid FedAudit config:\n  - config key 'preprocess.cube.size': "
                          f"{size} is not a multiple of 16, which the UNet's four 2x "
                          "poolings need (paper: 256, demo: 64)")
    from fedaudit.scenarios import ScenarioError, scenarios_from_config

    try:
        scenarios = scenarios_from_config(config)
    except ScenarioError as err:
        raise ConfigError(f"invalid FedAudit config:\n  - {err}") from None
    _check_attacks(config, set(scenarios))


def _expand_defaults(config: dict[str, Any], names: Sequence[str]) -> list[str]:
    """An attack's default scenarios with :data:`fedaudit.catalog.NOISE_GRID` replaced by every
    scenario of the noise grid (``scenarios.noise``, :func:`fedaudit.scenarios.noise_grid`), in
    config order."""
    from fedaudit.scenarios import noise_grid

    out: list[str] = []
    for name in names:
        out += (noise_grid(config["scenarios"]["noise"], config["defenses"])
                if name == NOISE_GRID else [name])
    return out


def _check_attacks(config: dict[str, Any], scenarios: set[str]) -> None:
    """Attack settings that the schema cannot express (they refer to scenarios and rounds), for
    every registered attack: its ``scenarios`` (null = its defaults that are trained) must be
    trained, and its own ``check`` (:class:`fedaudit.catalog.AttackSpec`) must pass."""
    for name, spec in catalog(config["plugins"]).attacks.items():
        settings = config["attacks"][name]
        if "scenarios" in settings and settings["scenarios"] is None:
            settings["scenarios"] = [s for s in _expand_defaults(config, spec.default_scenarios)
                                     if s in scenarios]
        if spec.check is not None:
            try:
                resolve(spec.check, spec.package)(config, scenarios)
            except SettingError as err:
                raise ConfigError(f"invalid FedAudit config:\n  - config key 'attacks.{name}."
                                  f"{err.key}': {err.why}") from None
        if not settings.get("enabled", True):
            continue
        unknown = [s for s in settings.get("scenarios") or [] if s not in scenarios]
        if unknown:
            raise ConfigError(f"invalid FedAudit config:\n  - config key 'attacks.{name}."
                              f"scenarios': {unknown} not among the trained scenarios "
                              f"({', '.join(sorted(scenarios))})")


def load_config(raw_or_path: dict[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(raw_or_path, (str, Path)):
        with open(raw_or_path) as fh:
            raw = yaml.safe_load(fh) or {}
    else:
        raw = raw_or_path
    return validate_config(raw)


# --------------------------------------------------------------------------- patients and files


@dataclass(frozen=True)
class PatientSource:
    """The raw files of one patient. Paths may not exist: the job that reads them says so."""

    center: str
    patient: str
    mr: Path
    ct: Path
    mask: Path | None
    demo: bool = False

    def existing_inputs(self) -> list[str]:
        files = [self.mr, self.ct] + ([self.mask] if self.mask else [])
        return [str(f) for f in files if f.exists()]


def discover_synthrad(center: str, root: str | Path,
                      patient_prefix: str | None = None) -> dict[str, PatientSource]:
    """Patients in the SynthRAD2023 Task 1 layout ``<root>/<patient>/{mr,ct[,mask]}.<ext>``.

    A folder counts as a patient when it holds an MR or a CT; a missing partner is reported by that
    patient's first step (:mod:`fedaudit.preprocess.quarantine`), not here. With
    ``patient_prefix`` only the folders whose name starts with it count: the public release keeps
    every center in one folder and codes the center in the id (``1BA001`` = task 1, brain,
    center A).
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"centers.{center}.source.root: folder {root} does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if patient_prefix is not None:
        chosen = [f for f in folders if f.name.startswith(patient_prefix)]
        if not chosen:
            raise ConfigError(
                f"centers.{center}.source.patient_prefix: no folder under {root} starts with "
                f"{patient_prefix!r} (found: {_some_names(folders)})")
        folders = chosen
    found: dict[str, PatientSource] = {}
    for folder in folders:
        mr, ct = find_volume(folder, "mr"), find_volume(folder, "ct")
        if mr is None and ct is None:
            continue
        if not _SAFE_ID.match(folder.name):
            raise ConfigError(f"{folder}: patient folder name must use letters, digits, '.', '-' "
                              "or '_' and not start with '.' (it becomes a path component)")
        found[folder.name] = PatientSource(
            center, folder.name, mr or folder / "mr.nii.gz", ct or folder / "ct.nii.gz",
            find_volume(folder, "mask"))
    if not found:
        which = "no patient folder" if patient_prefix is None else \
            f"no folder starting with {patient_prefix!r}"
        raise ConfigError(f"centers.{center}.source.root: {root} holds {which} with "
                          "mr.nii.gz / ct.nii.gz (SynthRAD2023 layout <root>/<patient>/mr.nii.gz)")
    return found


def _some_names(folders: Sequence[Path], shown: int = 5) -> str:
    """The first few folder names, enough to spot a mistyped prefix without flooding the error."""
    if not folders:
        return "no sub-folders"
    names = ", ".join(f.name for f in folders[:shown])
    return names if len(folders) <= shown else f"{names}, ... ({len(folders)} in all)"


def discover_manifest(center: str, csv_path: str | Path) -> dict[str, PatientSource]:
    """Patients of ``center`` listed in a CSV manifest (columns center, patient, mr, ct[, mask])."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ConfigError(f"centers.{center}.source.path: manifest {csv_path} does not exist")
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("center", "patient", "mr", "ct") if c not in columns]
        if missing:
            raise ConfigError(f"{csv_path}: manifest lacks column(s) {', '.join(missing)} "
                              f"(found: {', '.join(columns) or 'none'})")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    found: dict[str, PatientSource] = {}
    base = csv_path.parent
    for line, row in enumerate(rows, start=2):
        if row["center"] != center:
            continue
        pid = row["patient"]
        if not _SAFE_ID.match(pid):
            raise ConfigError(f"{csv_path}:{line}: patient id {pid!r} must use letters, digits, "
                              "'.', '-' or '_' and not start with '.' (it becomes a path "
                              "component)")
        if pid in found:
            raise ConfigError(f"{csv_path}:{line}: patient {pid!r} of center {center} listed twice")
        for col in ("mr", "ct"):
            if not row[col]:
                raise ConfigError(f"{csv_path}:{line}: empty '{col}' for patient {pid!r}")
        mask = row.get("mask") or None
        found[pid] = PatientSource(center, pid, base / row["mr"], base / row["ct"],
                                   base / mask if mask else None)
    if not found:
        raise ConfigError(f"{csv_path}: no row has center {center!r}")
    return found


class Study:
    """Centers, their roles and patients, derived once from a validated config."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    def centers(self, role: str | None = None) -> list[str]:
        return [c for c, v in self.config["centers"].items() if role in (None, v["role"])]

    def role(self, center: str) -> str:
        return self.config["centers"][center]["role"]

    @cached_property
    def _sources(self) -> dict[str, dict[str, PatientSource]]:
        out: dict[str, dict[str, PatientSource]] = {}
        for center, spec in self.config["centers"].items():
            src = spec["source"]
            if src["type"] == "synthrad":
                out[center] = discover_synthrad(center, src["root"], src.get("patient_prefix"))
            elif src["type"] == "manifest":
                out[center] = discover_manifest(center, src["path"])
            else:
                out[center] = self._demo_sources(center, int(src["patients"]))
        self._check_no_shared_patients(out)
        return self._without_excluded(out)

    def _without_excluded(self, sources: dict[str, dict[str, PatientSource]]
                          ) -> dict[str, dict[str, PatientSource]]:
        """``sources`` less ``preprocess.exclude``'s patients; an entry that names no patient
        of the study is an error naming it (a typo would otherwise keep the patient in)."""
        for entry in self.config["preprocess"].get("exclude", []):
            center, patient = entry.split("/", 1)
            if center not in sources:
                raise ConfigError(f"config key 'preprocess.exclude': {entry!r} names center "
                                  f"{center!r}, which is not in centers "
                                  f"({', '.join(sources)})")
            if patient not in sources[center]:
                found = sorted(sources[center])
                shown = ", ".join(found[:8]) + (", …" if len(found) > 8 else "")
                raise ConfigError(f"config key 'preprocess.exclude': {entry!r}: center "
                                  f"{center} has no patient {patient!r} (it has {shown})")
            sources[center] = {p: s for p, s in sources[center].items() if p != patient}
        return sources

    def excluded_by_config(self) -> list[str]:
        """The ``center/patient`` entries ``preprocess.exclude`` leaves out of the study."""
        return list(self.config["preprocess"].get("exclude", []))

    def _check_no_shared_patients(self, sources: dict[str, dict[str, PatientSource]]) -> None:
        """Centers sharing one SynthRAD root (told apart by ``patient_prefix``) must not both
        claim a patient: its volumes would sit in two centers, e.g. in training and in the
        external test set. One ``resolve`` per root, a set lookup per patient."""
        owner: dict[tuple[Path, str], str] = {}
        for center, spec in self.config["centers"].items():
            src = spec["source"]
            if src["type"] != "synthrad":
                continue
            root = Path(src["root"]).resolve()
            for patient in sources[center]:
                other = owner.setdefault((root, patient), center)
                if other != center:
                    raise ConfigError(
                        f"centers {other} and {center} both claim patient {patient} "
                        f"({root / patient}): centers that share a root need "
                        f"centers.<center>.source.patient_prefix values that select different "
                        "folders (SynthRAD2023: 1BA, 1BB, 1BC)")

    def _demo_sources(self, center: str, n: int) -> dict[str, PatientSource]:
        from fedaudit.data.centers import CENTER_PROFILES, patient_id

        ships_mask = CENTER_PROFILES[center].ships_mask
        out = {}
        for i in range(n):
            pid = patient_id(center, i)
            folder = Path(DEMO_ROOT) / center / pid
            out[pid] = PatientSource(center, pid, folder / "mr.nii.gz", folder / "ct.nii.gz",
                                     folder / "mask.nii.gz" if ships_mask else None, demo=True)
        return out

    def patients(self, center: str) -> list[str]:
        return list(self._sources[center])

    def source(self, center: str, patient: str) -> PatientSource:
        return self._sources[center][patient]

    def all_patients(self) -> list[tuple[str, str]]:
        return [(c, p) for c in self.centers() for p in self.patients(c)]
