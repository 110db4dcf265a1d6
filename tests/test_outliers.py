"""Per-center QC outlier flags: the robust z against an independent MAD, the leave-one-out
reference, the study-wide fallback, the policy record; and a real swapped MR/CT pair."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import median_abs_deviation

from fedaudit.preprocess.outliers import (
    excluded_patients,
    flag_outliers,
    flags_record,
    robust_z,
)


def _table(rows: dict[str, list[tuple[str, float, float, float]]]) -> pd.DataFrame:
    return pd.DataFrame([{"center": c, "patient": p, "mi_after": mi, "mask_mr_coverage": cov,
                          "outline_dice": dice}
                         for c, pats in rows.items() for p, mi, cov, dice in pats])


def test_robust_z_matches_scipy_normal_scaled_mad() -> None:
    ref = np.array([-0.70, -0.72, -0.66, -0.69, -0.75, -0.71])
    sd = median_abs_deviation(ref, scale="normal")  # MAD / Phi^-1(3/4) = 1.4826 MAD
    z = robust_z(-0.55, ref, floor=0.0)
    assert z == pytest.approx((-0.55 - np.median(ref)) / sd)
    # the floor takes over when the reference is tighter than it
    assert robust_z(-0.55, np.array([-0.70, -0.70, -0.70]), floor=0.02) == pytest.approx(7.5)


def test_a_pair_unlike_its_center_is_flagged_with_its_reason() -> None:
    # Demo-like numbers: true pairs MI -0.65..-0.78, a swapped pair -0.56 (0.13 above median).
    table = _table({
        "D": [("d1", -0.69, 0.96, 0.95), ("d2", -0.70, 0.96, 0.95), ("d3", -0.65, 0.96, 0.95),
              ("d4", -0.56, 0.955, 0.95), ("d5", -0.71, 0.96, 0.95)],
        "A": [("a1", -0.72, 0.95, 0.95), ("a2", -0.69, 0.95, 0.95), ("a3", -0.67, 0.95, 0.95)],
    })
    out = flag_outliers(table).set_index("patient")
    assert out.loc["d4", "qc_flagged"] and not out.drop(index="d4")["qc_flagged"].any()
    assert "Mattes MI after registration -0.560 vs median -0.695 of its center's other 4" in \
        out.loc["d4", "qc_reasons"]
    # d3, the worst true pair, stays below the threshold; a better-than-typical pair is not
    # "worse" (the score is directional)
    assert 0 < out.loc["d3", "qc_z_mi_after"] < 3.5
    assert out.loc["d5", "qc_z_mi_after"] < 0


def test_low_coverage_and_outline_agreement_flag_too() -> None:
    base = [("x1", -0.70, 0.96, 0.955), ("x2", -0.71, 0.965, 0.952), ("x3", -0.69, 0.962, 0.95)]
    out = flag_outliers(_table({"X": base + [("x4", -0.70, 0.90, 0.953),
                                             ("x5", -0.70, 0.962, 0.91)]}))
    out = out.set_index("patient")
    assert "MR foreground inside the head mask 0.900" in out.loc["x4", "qc_reasons"]
    assert "head-outline agreement" in out.loc["x5", "qc_reasons"]
    assert list(out["qc_flagged"]) == [False, False, False, True, True]


def test_a_center_too_small_to_be_its_own_reference_is_not_scored() -> None:
    table = _table({
        "D": [(f"d{i}", -0.70 + 0.01 * (i % 3), 0.96, 0.95) for i in range(6)],
        "B": [("b1", -0.55, 0.96, 0.95), ("b2", -0.70, 0.96, 0.95)],  # one other patient each
    })
    out = flag_outliers(table).set_index("patient")
    # another scanner's patients are no reference for B: b1 is not judged against them
    assert not out.loc["b1", "qc_flagged"] and np.isnan(out.loc["b1", "qc_z_mi_after"])
    assert out.loc["b1", "qc_reference_patients"] == 1
    assert out.loc["d0", "qc_reference_patients"] == 5 and np.isfinite(out.loc["d0",
                                                                             "qc_z_mi_after"])


def test_policy_decides_who_is_excluded() -> None:
    table = flag_outliers(_table({"D": [("d1", -0.70, 0.96, 0.95), ("d2", -0.71, 0.96, 0.95),
                                        ("d3", -0.69, 0.96, 0.95), ("d4", -0.50, 0.96, 0.95)]}))
    rec = flags_record(table, policy="exclude", threshold=3.5)
    assert list(rec["flagged"]) == ["D/d4"] and rec["excluded"] == ["D/d4"]
    assert excluded_patients(rec) == {("D", "d4")}
    kept = flags_record(table, policy="keep", threshold=3.5)
    assert kept["flagged"] == rec["flagged"] and kept["excluded"] == []
    assert rec["left_out"] == [] and flags_record(
        table, policy="exclude", threshold=3.5, left_out=["D/d9", "A/a1"])["left_out"] == [
        "A/a1", "D/d9"]
    with pytest.raises(ValueError, match="unknown QC policy 'drop'"):
        flags_record(table, policy="drop", threshold=3.5)


def test_a_swapped_mr_ct_pair_is_flagged(tmp_path: Path) -> None:
    """End to end on demo data: four patients of the external center E (SynthRAD-style, with a
    shipped mask) preprocessed through the real steps, one folder holding another patient's MR
    beside its CT. Only that patient is flagged, and mainly by its MI after registration."""
    from fedaudit.data.demo import generate_patient
    from fedaudit.io import read_volume
    from fedaudit.preprocess.pipeline import mask_step, register_step

    raw = tmp_path / "raw"
    for i in range(5):
        generate_patient("E", i, 42, raw / f"P{i}", resolution_scale=5.0)
    # P4 is a SynthRAD folder whose mr.nii.gz belongs to P0: CT and mask are P4's own
    shutil.copy(raw / "P0" / "mr.nii.gz", raw / "P4" / "mr.nii.gz")
    rows = []
    for i in range(5):
        src, out = raw / f"P{i}", tmp_path / "out" / f"P{i}"
        out.mkdir(parents=True)
        reg = register_step(src / "mr.nii.gz", src / "ct.nii.gz", out / "mr.nii.gz",
                            out / "rigid.tfm", out / "reg.json", backend="simpleitk", seed=42,
                            threads=1)
        msk = mask_step(src / "ct.nii.gz", out / "mr.nii.gz", src / "mask.nii.gz",
                        out / "mask.nii.gz", out / "mask.json", threshold_hu=-500,
                        min_coverage=0.8, min_mr_fill=0.3, mr_source=src / "mr.nii.gz",
                        transform=out / "rigid.tfm")
        assert read_volume(out / "mask.nii.gz").GetSize() == read_volume(src / "ct.nii.gz") \
            .GetSize()
        rows.append({"center": "E", "patient": f"P{i}", "mi_after": reg["metric_after"],
                     "mask_mr_coverage": msk["coverage"], "outline_dice": msk["outline_dice"]})
    out = flag_outliers(pd.DataFrame(rows)).set_index("patient")
    assert list(out.index[out["qc_flagged"]]) == ["P4"], out.filter(like="qc_z").round(1)
    assert out.loc["P4", "qc_z_mi_after"] >= 3.5
