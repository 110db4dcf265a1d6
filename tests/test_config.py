"""Config validation: defaults, and errors that name the key or file at fault."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from fedaudit.config import ConfigError, Study, load_config, validate_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo_raw() -> dict:
    with open(REPO / "config" / "config.yaml") as fh:
        return yaml.safe_load(fh)


def test_shipped_configs_validate() -> None:
    for name in ("config.yaml", "paper.yaml"):
        cfg = load_config(REPO / "config" / name)
        assert cfg["seed"] == 42
        assert [c for c, v in cfg["centers"].items() if v["role"] == "external"] == ["E"]
    assert load_config(REPO / "config" / "paper.yaml")["preprocess"]["cube"]["size"] == 256


def test_defaults_are_filled(demo_raw: dict) -> None:
    raw = {"centers": {"A": {"role": "train", "source": {"type": "demo"}}}}
    cfg = validate_config(raw)
    assert cfg["seed"] == 42
    assert cfg["centers"]["A"]["source"]["patients"] == 3
    assert cfg["preprocess"]["registration"]["backend"] == "simpleitk"
    assert cfg["preprocess"]["n4"]["iterations"] == [50, 50, 50, 50]
    assert cfg["preprocess"]["cube"] == {"size": 64, "spacing_mm": None}
    # attacks: FedMIA needs two train centers, so a one-center study has it off; DLG on baseline
    assert cfg["attacks"]["fedmia"]["enabled"] is False
    assert cfg["attacks"]["fedmia"]["scenarios"] == ["baseline"]
    assert cfg["attacks"]["dlg"]["scenarios"] == ["baseline"]
    assert raw == {"centers": {"A": {"role": "train", "source": {"type": "demo"}}}}, "input mutated"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c.update(sead=1), "unknown config key 'sead'"),
        (lambda c: c["preprocess"]["cube"].update(sise=64), "'preprocess.cube.sise'"),
        (lambda c: c["preprocess"]["cube"].update(size=8), "config key 'preprocess.cube.size'"),
        (lambda c: c["preprocess"]["cube"].update(size=40), "40 is not a multiple of 16"),
        (lambda c: c.update(scenarios={"custom": {"m": {"aggregation": "krum",
                                                              "defenses": ["secagg"]}}}),
         "SecAgg+ with krum is not possible"),
        (lambda c: c["preprocess"]["registration"].update(backend="elastix"),
         "config key 'preprocess.registration.backend'"),
        (lambda c: c["centers"]["A"].update(role="trainer"), "config key 'centers.A.role'"),
        (lambda c: c["centers"]["A"]["source"].update(type="dicom"),
         "config key 'centers.A.source.type' is 'dicom'"),
        (lambda c: c["centers"]["A"].update(source={"type": "synthrad"}),
         "'centers.A.source' is missing a required entry: 'root'"),
        (lambda c: c["centers"]["A"]["source"].update(patient=3),
         "unknown config key 'centers.A.source.patient'"),
        (lambda c: c.update(splits={"train": 0.8, "val": 0.1, "test": 0.2}), "must be 1"),
        (lambda c: [v.update(role="external") for v in c["centers"].values()],
         "no center has role"),
        (lambda c: c["centers"].update(F={"role": "train", "source": {"type": "demo"}}),
         "'centers.F.source': demo data exists for centers A, B, C, D, E only"),
        (lambda c: c.update(attacks={"fedmia": {"scenarios": ["baseline", "krum"]}}),
         "'attacks.fedmia.scenarios': ['krum'] not among the trained scenarios"),
        (lambda c: c.update(attacks={"fedmia": {"slices_per_orientation": 4, "batch_size": 8}}),
         "'attacks.fedmia.batch_size': 8 slices per batch unit, but a patient has only "
         "slices_per_orientation = 4"),
        (lambda c: c.update(attacks={"dlg": {"round": 36}}),
         "'attacks.dlg.round': round(s) [36] exceed train.rounds = 35"),
        (lambda c: (c["train"].update(server_log={"rounds": "last"}),
                    c.update(attacks={"fedmia": {"rounds": [2, 35]}})),
         "[2, 35] but train.server_log.rounds is 'last', so only round 35 is logged"),
        (lambda c: c.update(attacks={"dlg": {"optimizers": ["sgd"]}}),
         "config key 'attacks.dlg.optimizers.0'"),
        (lambda c: (c["centers"].update({k: {"role": "external", "source": {"type": "demo"}}
                                         for k in "BCD"}),
                    c.update(scenarios={"unpoisoned": ["baseline"]}),
                    c.update(attacks={"fedmia": {"enabled": True}})),
         "FedMIA needs at least 2 train centers"),
    ],
)
def test_bad_config_names_the_key(demo_raw: dict, edit, expected: str) -> None:
    raw = copy.deepcopy(demo_raw)
    edit(raw)
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    assert expected in str(err.value)


def _write(path: Path, value: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((4, 5, 6), value, dtype=np.float32)
    arr[0, 0, 0] = 0
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    return path


def test_synthrad_layout_discovery(tmp_path: Path) -> None:
    root = tmp_path / "A"
    _write(root / "1BA001" / "mr.nii.gz")
    _write(root / "1BA001" / "ct.nii.gz")
    _write(root / "1BA001" / "mask.nii.gz")
    _write(root / "1BA002" / "mr.nii")  # other readable formats count
    _write(root / "1BA002" / "ct.mha")
    _write(root / "1BA003" / "mr.nii.gz")  # CT missing: reported by its own job, not here
    (root / "notes").mkdir()
    cfg = validate_config({"centers": {"A": {"role": "train",
                                             "source": {"type": "synthrad", "root": str(root)}}}})
    study = Study(cfg)
    assert study.patients("A") == ["1BA001", "1BA002", "1BA003"]
    assert study.source("A", "1BA001").mask == root / "1BA001" / "mask.nii.gz"
    assert study.source("A", "1BA002").mask is None
    assert study.source("A", "1BA002").ct == root / "1BA002" / "ct.mha"
    missing = study.source("A", "1BA003")
    assert missing.ct == root / "1BA003" / "ct.nii.gz" and not missing.ct.exists()
    assert missing.existing_inputs() == [str(root / "1BA003" / "mr.nii.gz")]


def test_synthrad_missing_root_names_it(tmp_path: Path) -> None:
    cfg = validate_config({"centers": {"A": {"role": "train", "source": {
        "type": "synthrad", "root": str(tmp_path / "nowhere")}}}})
    with pytest.raises(ConfigError, match="nowhere does not exist"):
        Study(cfg).patients("A")


def test_manifest_discovery_and_errors(tmp_path: Path) -> None:
    _write(tmp_path / "img" / "p1_mr.nii.gz")
    _write(tmp_path / "img" / "p1_ct.nii.gz")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("center,patient,mr,ct,mask\n"
                        "A,p1,img/p1_mr.nii.gz,img/p1_ct.nii.gz,\n"
                        "B,p9,img/x.nii.gz,img/y.nii.gz,img/m.nii.gz\n")
    cfg = validate_config({"centers": {
        "A": {"role": "train", "source": {"type": "manifest", "path": str(manifest)}},
        "B": {"role": "external", "source": {"type": "manifest", "path": str(manifest)}}}})
    study = Study(cfg)
    src = study.source("A", "p1")
    assert src.mr == tmp_path / "img" / "p1_mr.nii.gz" and src.mask is None
    assert study.source("B", "p9").mask == tmp_path / "img" / "m.nii.gz"

    bad = tmp_path / "bad.csv"
    bad.write_text("center,patient,mr\nA,p1,img/p1_mr.nii.gz\n")
    cfg = validate_config({"centers": {"A": {"role": "train", "source": {
        "type": "manifest", "path": str(bad)}}}})
    with pytest.raises(ConfigError, match=r"bad.csv: manifest lacks column\(s\) ct"):
        Study(cfg).patients("A")

    dup = tmp_path / "dup.csv"
    dup.write_text("center,patient,mr,ct\nA,p1,a,b\nA,p1,c,d\n")
    cfg = validate_config({"centers": {"A": {"role": "train", "source": {
        "type": "manifest", "path": str(dup)}}}})
    with pytest.raises(ConfigError, match=r"dup.csv:3: patient 'p1' of center A listed twice"):
        Study(cfg).patients("A")


def test_string_overrides_take_the_schema_type(demo_raw: dict) -> None:
    """Snakemake hands nested --config values over as strings (train='{rounds: 5}' arrives as
    {'rounds': '5'}): a string the schema rejects is read as YAML where that reading fits; a
    string the schema accepts stays one."""
    raw = copy.deepcopy(demo_raw)
    raw["train"].update(rounds="5", lr="2e-3", augment={"enabled": "true"})
    raw["attacks"] = {"dlg": {"iterations": "10", "optimizers": ["adam"]},
                      "trap_weights": {"batch_sizes": "[8, 32]"}}
    raw["centers"]["A"] = {"role": "train", "source": {"type": "synthrad", "root": "001",
                                                        "patient_prefix": "007"}}
    cfg = validate_config(raw)
    assert cfg["train"]["rounds"] == 5 and isinstance(cfg["train"]["rounds"], int)
    assert cfg["train"]["lr"] == 0.002 and cfg["train"]["augment"]["enabled"] is True
    assert cfg["attacks"]["dlg"]["iterations"] == 10
    assert cfg["attacks"]["trap_weights"]["batch_sizes"] == [8, 32]
    # strings the schema takes as strings are left alone, numeric-looking or not
    assert cfg["centers"]["A"]["source"] == {"type": "synthrad", "root": "001",
                                             "patient_prefix": "007"}
    # a string no reading makes valid is still an error naming its key
    raw["train"]["rounds"] = "five"
    with pytest.raises(ConfigError, match="train.rounds"):
        validate_config(raw)


def test_a_moved_execution_key_names_its_new_place(demo_raw: dict) -> None:
    """Threads, workers, backend and devices live in ``execution`` (they re-run nothing); an
    old config that sets one where it used to be gets the new place, every such key at once."""
    raw = copy.deepcopy(demo_raw)
    raw["train"]["threads"] = 4
    raw["train"]["backend"] = "ray"
    raw["attacks"]["device"] = "cuda"
    raw["evaluate"]["threads"] = 2
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    msg = str(err.value)
    for old, new in (("train.threads", "execution.train.threads"),
                     ("train.backend", "execution.train.backend"),
                     ("attacks.device", "execution.attacks.device"),
                     ("evaluate.threads", "execution.evaluate.threads")):
        assert f"config key '{old}' has moved to '{new}'" in msg
    # the new place validates like any key, a bad value named by its path
    raw = copy.deepcopy(demo_raw)
    raw["execution"]["train"]["threads"] = 0
    with pytest.raises(ConfigError, match="'execution.train.threads'"):
        validate_config(raw)
    # the defaults fill it when a config has none
    raw = copy.deepcopy(demo_raw)
    del raw["execution"]
    assert validate_config(raw)["execution"] == {
        "train": {"device": "auto", "threads": 2, "num_workers": 0, "backend": "inprocess",
                  "ray": {"num_cpus": 1, "num_gpus": 0},
                  "deployment": {"insecure": False, "timeout_s": 86400},
                  "keep_checkpoints": False},
        "evaluate": {"threads": 2}, "attacks": {"device": "auto", "threads": 2}}


def test_preprocess_exclude_leaves_a_patient_out_and_names_a_wrong_entry(demo_raw: dict) -> None:
    raw = copy.deepcopy(demo_raw)
    all_a = Study(validate_config(raw)).patients("A")
    raw["preprocess"]["exclude"] = [f"A/{all_a[1]}"]
    study = Study(validate_config(raw))
    assert study.patients("A") == [all_a[0], *all_a[2:]]
    assert (("A", all_a[1]) not in study.all_patients()
            and study.excluded_by_config() == [f"A/{all_a[1]}"])
    for entry, expected in ((f"Z/{all_a[0]}", "names center 'Z', which is not in centers"),
                            ("A/nobody", f"center A has no patient 'nobody' (it has {all_a[0]}")):
        raw["preprocess"]["exclude"] = [entry]
        with pytest.raises(ConfigError, match=r"config key 'preprocess\.exclude'") as err:
            Study(validate_config(raw)).all_patients()
        assert expected in str(err.value)
    # the schema refuses what is not center/patient
    raw["preprocess"]["exclude"] = ["A"]
    with pytest.raises(ConfigError, match=r"'preprocess\.exclude\.0'"):
        validate_config(raw)
