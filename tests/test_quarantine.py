"""A patient who fails preprocessing is recorded, passed on and decided on at the QC table
(preprocess.on_error): the records, their propagation, what readers do with them, the decision,
the table and the evaluation's row. The whole path through Snakemake is in
tests/test_workflow.py (bad patients, the swapped pair)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from fedaudit.io import QUARANTINE_KEY, VolumeError, quarantine_record, read_header, read_volume
from fedaudit.preprocess.outliers import (
    FailedPatientsError,
    apply_on_error,
    failed_patients,
    flags_record,
    qc_table,
    split_records,
)
from fedaudit.preprocess.pipeline import PatientError
from fedaudit.preprocess.quarantine import run_step


def _fail(exc: Exception):
    def work() -> None:
        raise exc
    return work


def test_a_data_error_quarantines_every_output_and_readers_refuse_them(tmp_path: Path) -> None:
    outs = [tmp_path / "1" / "mr.nii.gz", tmp_path / "1" / "record.json"]
    rec = run_step("register", center="A", patient="p1", inputs=[], outputs=outs,
                   work=_fail(PatientError("/data/p1/ct.nii.gz: CT file cannot be read")))
    assert rec is not None and rec["step"] == "register"
    for path in outs:
        assert quarantine_record(path) == {QUARANTINE_KEY: 1, "center": "A", "patient": "p1",
                                           "step": "register",
                                           "error": "/data/p1/ct.nii.gz: CT file cannot be read"}
    # a reader that did not skip the patient fails, naming it and the step (never a volume)
    for read in (read_volume, read_header):
        with pytest.raises(VolumeError, match=r"of A/p1 was never made: .* at step register"):
            read(outs[0], "MR")
    # the next step passes the failure on without running
    ran = []
    nxt = [tmp_path / "2" / "mask.nii.gz"]
    rec2 = run_step("head_mask", center="A", patient="p1", inputs=[outs[0], tmp_path / "raw"],
                    outputs=nxt, work=lambda: ran.append(1))
    assert not ran and rec2 is not None and rec2["step"] == "register"
    assert quarantine_record(nxt[0])["error"] == rec["error"]
    # the figure of a failed patient is written by on_failure, not as a record
    drawn = []
    run_step("qc", center="A", patient="p1", inputs=nxt, outputs=[tmp_path / "qc.json"],
             work=lambda: None, on_failure=drawn.append)
    assert drawn and drawn[0]["step"] == "register"


def test_volume_errors_quarantine_and_bugs_still_fail(tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    assert run_step("n4", center="A", patient="p", inputs=[], outputs=[out],
                    work=_fail(VolumeError(tmp_path / "m.nii.gz", "mask is empty"))) is not None
    assert quarantine_record(out)["error"].endswith("m.nii.gz: mask is empty")
    # anything else is not the patient's data: the job fails as it did, nothing is written
    for exc in (TypeError("bug"), KeyError("x"), RuntimeError("ITK")):
        bad = tmp_path / f"{type(exc).__name__}.json"
        with pytest.raises(type(exc)):
            run_step("n4", center="A", patient="p", inputs=[], outputs=[bad], work=_fail(exc))
        assert not bad.exists()
    # a step that works writes no record
    done = tmp_path / "done.json"
    assert run_step("n4", center="A", patient="p", inputs=[], outputs=[done],
                    work=lambda: done.write_text('{"step": "n4"}')) is None
    assert quarantine_record(done) is None


def test_only_a_quarantine_record_reads_as_one(tmp_path: Path) -> None:
    vol = tmp_path / "v.nii.gz"
    img = sitk.GetImageFromArray(np.arange(27, dtype=np.float32).reshape(3, 3, 3))
    sitk.WriteImage(img, str(vol))
    (tmp_path / "r.json").write_text(json.dumps({"step": "register", "center": "A"}))
    (tmp_path / "bad.json").write_text("{not json")
    for name in ("v.nii.gz", "r.json", "bad.json", "missing.json"):
        assert quarantine_record(tmp_path / name) is None
    assert read_volume(vol).GetSize() == (3, 3, 3)


def _quarantined(center: str, patient: str, step: str, error: str) -> dict:
    return {QUARANTINE_KEY: 1, "center": center, "patient": patient, "step": step,
            "error": error}


def test_on_error_fail_names_every_failed_patient_and_exclude_goes_on() -> None:
    failed = split_records([
        {"center": "A", "patient": "ok", "mi_after": -0.7},
        _quarantined("A", "trunc", "register", "/d/trunc/ct.nii.gz: CT file cannot be read"),
        _quarantined("E", "P2", "register", "/d/P2/ct.nii.gz: CT file does not exist")])[1]
    assert sorted(failed) == ["A/trunc", "E/P2"]
    with pytest.raises(FailedPatientsError) as err:
        apply_on_error(failed, "fail")
    msg = str(err.value)
    assert msg.startswith("2 patient(s) could not be preprocessed:")
    assert "A/trunc at register: /d/trunc/ct.nii.gz: CT file cannot be read" in msg
    assert "E/P2 at register: /d/P2/ct.nii.gz: CT file does not exist" in msg
    assert "preprocess.on_error: exclude" in msg
    assert apply_on_error(failed, "exclude") == {
        "A/trunc": "register: /d/trunc/ct.nii.gz: CT file cannot be read",
        "E/P2": "register: /d/P2/ct.nii.gz: CT file does not exist"}
    assert apply_on_error({}, "fail") == {}
    with pytest.raises(ValueError, match="preprocess.on_error"):
        apply_on_error(failed, "skip")


def _qc(center: str, patient: str, mi: float) -> dict:
    return {"center": center, "patient": patient, "mi_after": mi, "mask_mr_coverage": 0.96,
            "outline_dice": 0.95, "shape": [8, 8, 8]}


def test_the_qc_table_lists_failed_patients_in_place_without_scoring_them() -> None:
    records = [_qc("A", "a1", -0.70), _quarantined("A", "a2", "head_mask", "no head"),
               _qc("A", "a3", -0.69), _qc("A", "a4", -0.71), _qc("A", "a5", -0.55)]
    table = qc_table(records, threshold=3.5)
    assert list(table["patient"]) == ["a1", "a2", "a3", "a4", "a5"]
    assert list(table.columns[:6]) == ["center", "patient", "qc_flagged", "qc_reasons",
                                       "failed_step", "error"]
    row = table.set_index("patient")
    assert row.loc["a2", "failed_step"] == "head_mask" and row.loc["a2", "error"] == "no head"
    assert np.isnan(row.loc["a2", "mi_after"]) and not row.loc["a2", "qc_flagged"]
    # the reference is the other preprocessed patients only: 3, not 4
    assert row.loc["a1", "qc_reference_patients"] == 3
    assert row.loc["a5", "qc_flagged"] and row.loc["a1", "shape"] == "8 8 8"
    rec = flags_record(table[table["failed_step"] == ""], policy="keep", threshold=3.5,
                       failed=apply_on_error(split_records(records)[1], "exclude"))
    # a failed patient is excluded whatever the QC policy; a kept flag stays kept
    assert rec["excluded"] == ["A/a2"] and list(rec["flagged"]) == ["A/a5"]
    assert rec["failed"] == {"A/a2": "head_mask: no head"}
    assert failed_patients(rec) == {("A", "a2")}
    with pytest.raises(ValueError, match="no patient could be preprocessed"):
        qc_table([_quarantined("A", "a2", "register", "x")])


def test_evaluation_gives_a_failed_patient_an_excluded_row_and_no_scan(tmp_path: Path) -> None:
    from fedaudit.evaluation.run import COLUMNS, evaluate_predictor

    def never(_vol):
        raise AssertionError("a failed patient has no volume to predict from")

    sct = tmp_path / "sct" / "E" / "P5.nii.gz"
    table = evaluate_predictor(never, patients=[("E", "P5")], preprocessed_root=tmp_path,
                               metrics_path=tmp_path / "metrics.csv", scenario="baseline",
                               sct_paths=[sct], excluded={("E", "P5")}, failed={("E", "P5")})
    back = pd.read_csv(tmp_path / "metrics.csv")
    assert list(back.columns) == COLUMNS and len(table) == 1
    assert bool(back.loc[0, "excluded"]) and back[["mae", "psnr", "ssim"]].isna().all(axis=None)
    assert quarantine_record(sct)["center"] == "E"


def test_a_failed_patients_qc_figure_says_why(tmp_path: Path, monkeypatch) -> None:
    from fedaudit.plots.qc import failed_png
    from fedaudit.plots.style import CHECK_ENV

    monkeypatch.setenv(CHECK_ENV, "1")  # refuse overlapping texts
    error = ("/hospital/site-a/patients/1BA042/ct.nii.gz: CT file cannot be read (corrupt or "
             "truncated?): EOFError: Compressed file ended before the end-of-stream marker")
    failed_png(_quarantined("A", "1BA042", "register", error), tmp_path / "qc.png")
    assert (tmp_path / "qc.png").stat().st_size > 0 and (tmp_path / "qc.pdf").stat().st_size > 0
