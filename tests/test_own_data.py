"""Own data: the public SynthRAD2023 layout (one folder, the center coded in the patient id)
selected per center with ``patient_prefix``, and the manifest example. The shipped examples
validate, each center gets exactly its patients, the whole DAG plans them, and one patient's
preprocessing runs."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import SimpleITK as sitk
import yaml
from phantoms import ct_phantom, euler, head_truth_mask, mr_phantom

from conftest import REPO, copy_checkout, run_snakemake
from fedaudit.config import ConfigError, Study, validate_config

EXAMPLES = REPO / "config" / "examples"
# The release's naming: task 1, Brain, center letter, patient number.
PATIENTS = {"A": ["1BA001", "1BA002"], "B": ["1BB001", "1BB002"], "C": ["1BC001"]}
# Small enough that one patient's preprocessing takes seconds: 6 mm phantoms, a 32^3 cube.
TINY_PREPROCESS = {"threads": 1, "n4": {"shrink": 2, "iterations": [10, 10]},
                   "cube": {"size": 32, "spacing_mm": None}}


@pytest.fixture(scope="module")
def brain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``SynthRAD2023/Task1/brain`` as released: every center's patient folders side by side,
    each with mr, ct and mask, plus the release's ``overview`` folder (no images)."""
    root = tmp_path_factory.mktemp("SynthRAD2023") / "Task1" / "brain"
    for i, pid in enumerate(p for pids in PATIENTS.values() for p in pids):
        folder = root / pid
        folder.mkdir(parents=True)
        ct, labels = ct_phantom(6.0, seed=i)
        # a small rigid MR <-> CT misalignment, different per patient, for registration to undo
        mr, _, _ = mr_phantom(6.0, fixed_to_moving=euler((2.0 + i, 0.0, -1.0), (3.0, -2.0, i)),
                              seed=10 + i)
        sitk.WriteImage(ct, str(folder / "ct.nii.gz"))
        sitk.WriteImage(mr, str(folder / "mr.nii.gz"))
        sitk.WriteImage(head_truth_mask(labels), str(folder / "mask.nii.gz"))
    (root / "overview").mkdir()
    (root / "overview" / "1_brain_train.csv").write_text("ID,center\n")
    return root


def _example(root: Path | str, preprocess: dict[str, Any] | None = None) -> dict[str, Any]:
    """config/examples/synthrad2023.yaml with its placeholder root replaced by ``root``."""
    raw = yaml.safe_load((EXAMPLES / "synthrad2023.yaml").read_text())
    for spec in raw["centers"].values():
        assert spec["source"]["root"] == "/data/SynthRAD2023/Task1/brain"
        spec["source"]["root"] = str(root)
    if preprocess:
        raw["preprocess"] = {**raw["preprocess"], **preprocess}
    return raw


def test_each_center_gets_exactly_its_prefix(brain: Path) -> None:
    study = Study(validate_config(_example(brain)))
    assert {c: study.patients(c) for c in study.centers()} == PATIENTS
    assert study.centers("train") == ["A", "B"] and study.centers("external") == ["C"]
    src = study.source("B", "1BB002")
    assert (src.mr, src.ct, src.mask) == tuple(brain / "1BB002" / f"{k}.nii.gz"
                                               for k in ("mr", "ct", "mask"))
    # the example is paper scale as shipped
    assert validate_config(_example(brain))["preprocess"]["cube"]["size"] == 256


def _planned_pairs(out: str) -> set[tuple[str, str]]:
    return set(re.findall(r"results/preprocessed/([\w-]+)/([\w.-]+)/qc\.json", out))


def test_the_example_plans_those_patients_and_preprocesses_one(tmp_path: Path,
                                                               brain: Path) -> None:
    ck = copy_checkout(tmp_path / "checkout")
    cfg = ck / "own.yaml"
    cfg.write_text(yaml.safe_dump(_example(brain, TINY_PREPROCESS)))
    dry = run_snakemake(ck, "-n", "--configfile", str(cfg), snakefile=ck / "Snakefile")
    assert dry.returncode == 0, dry.stderr[-3000:]
    out = dry.stdout + dry.stderr
    assert _planned_pairs(out) == {(c, p) for c, pids in PATIENTS.items() for p in pids}
    assert re.search(r"^register\s+5\s*$", out, re.M), out[-3000:]

    # One patient, by asking for its file (targets first: what follows --configfile is read as
    # more config files).
    res = run_snakemake(ck, "results/preprocessed/A/1BA001/qc.png", "--cores", "2",
                        "--configfile", str(cfg), snakefile=ck / "Snakefile")
    assert res.returncode == 0, res.stderr[-3000:]
    done = ck / "results" / "preprocessed"
    assert (done / "A" / "1BA001" / "qc.json").exists()
    assert sitk.ReadImage(str(done / "A" / "1BA001" / "mr.nii.gz")).GetSize() == (32, 32, 32)
    assert sorted(p.name for p in done.iterdir()) == ["A"]
    assert sorted(p.name for p in (done / "A").iterdir()) == ["1BA001"]


def test_the_manifest_example_resolves_relative_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    # the manifest path is relative to the working directory, the images to the CSV
    monkeypatch.chdir(REPO)
    study = Study(validate_config(yaml.safe_load((EXAMPLES / "manifest.yaml").read_text())))
    assert {c: study.patients(c) for c in study.centers()} == {
        "A": ["a001", "a002", "a003"], "B": ["b001", "b002"], "E": ["e001"]}
    a1 = study.source("A", "a001")
    assert a1.mr.resolve() == EXAMPLES / "images" / "a001_t1.nii.gz"
    assert a1.mask is not None and a1.mask.resolve() == EXAMPLES / "images" / "a001_mask.nii.gz"
    assert study.source("A", "a002").mask is None
    assert study.source("A", "a003").ct.resolve() == EXAMPLES / "images" / "a003_ct.mha"
    assert study.source("B", "b001").mr == Path("/data/hospital_b/b001/mr.nii.gz")
    assert study.role("E") == "external"


def _with_sources(raw: dict[str, Any], **sources: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for center, source in sources.items():
        out["centers"][center]["source"] = {**out["centers"][center]["source"], **source}
    return out


def test_a_prefix_that_selects_nothing_names_key_prefix_root_and_folders(brain: Path) -> None:
    raw = _with_sources(_example(brain), B={"patient_prefix": "1bb"})  # the ids are upper-case
    with pytest.raises(ConfigError) as err:
        Study(validate_config(raw)).all_patients()
    msg = str(err.value)
    for part in ("centers.B.source.patient_prefix", "'1bb'", str(brain), "1BA001, 1BA002"):
        assert part in msg, msg


def test_overlapping_centers_name_both_centers_and_the_patient(brain: Path,
                                                               tmp_path: Path) -> None:
    raw = _example(brain)
    # "1B" claims every brain patient, center A's too; the same root spelled differently
    # (a trailing "/.", a symlink) is still the same folder
    (tmp_path / "link").symlink_to(brain)
    for b_root in (str(brain), f"{brain}/.", str(tmp_path / "link")):
        bad = _with_sources(raw, B={"root": b_root, "patient_prefix": "1B"})
        with pytest.raises(ConfigError, match=r"centers A and B both claim patient 1BA001 "):
            Study(validate_config(bad)).all_patients()
    # no prefix at all on a shared root: every center claims every patient
    bare = copy.deepcopy(raw)
    for spec in bare["centers"].values():
        del spec["source"]["patient_prefix"]
    with pytest.raises(ConfigError, match="both claim patient 1BA001"):
        Study(validate_config(bare)).all_patients()


@pytest.mark.parametrize("prefix", ["", "1BA*", "../1BA"])
def test_a_malformed_prefix_is_a_schema_error(brain: Path, prefix: str) -> None:
    raw = _with_sources(_example(brain), A={"patient_prefix": prefix})
    with pytest.raises(ConfigError, match=r"config key 'centers\.A\.source\.patient_prefix'"):
        validate_config(raw)


def test_a_mistyped_prefix_stops_the_workflow_before_any_job(workdir: Path,
                                                              brain: Path) -> None:
    raw = _with_sources(_example(brain, TINY_PREPROCESS), C={"patient_prefix": "1BD"})
    cfg = workdir / "own.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    res = run_snakemake(workdir, "-n", "--configfile", str(cfg))
    assert res.returncode != 0
    assert "centers.C.source.patient_prefix: no folder under" in res.stdout + res.stderr
    assert not (workdir / "results").exists()
