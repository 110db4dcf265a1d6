"""Preprocessing against the demo generator's ground truth (an independent reference: the
generator knows the rigid MR<->CT misalignment and the multiplicative bias field it applied)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fedaudit.data.demo import generate_patient
from fedaudit.data.phantom import LABELS
from fedaudit.preprocess.n4 import n4_correct
from fedaudit.preprocess.register import rigid_error, rigid_register, transform_parameters

# Scale 2.0: voxels of ~1-2 mm in-plane (center A: CT 1.1 x 1.1 x 5 mm, MR 2 mm iso; center E:
# CT 1.8 x 1.8 x 4 mm, MR 1.96 mm), fine enough that a 1 mm / 1 degree bound is meaningful.
SCALE = 2.0


@pytest.fixture(scope="module", params=["A", "E"])
def patient(request, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(f"demo{request.param}")
    generate_patient(request.param, 0, 42, out, resolution_scale=SCALE)
    return out


def _brain_points(folder: Path, ct: sitk.Image) -> np.ndarray:
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "truth" / "labels_ct.nii.gz")))
    brain = np.isin(labels, [LABELS[k] for k in ("csf", "gm", "wm", "ventricles")])
    idx = np.argwhere(brain)[::23]
    return np.array([ct.TransformContinuousIndexToPhysicalPoint([float(v) for v in i[::-1]])
                     for i in idx])


def test_registration_recovers_the_known_rigid_transform(patient: Path) -> None:
    ct = sitk.ReadImage(str(patient / "ct.nii.gz"))
    mr = sitk.ReadImage(str(patient / "mr.nii.gz"))
    truth = sitk.ReadTransform(str(patient / "truth" / "rigid.tfm"))
    pts = _brain_points(patient, ct)
    # The misalignment is real work: identity is off by more than the bound.
    ident_mm, ident_deg = rigid_error(sitk.Euler3DTransform(), truth, pts)
    assert ident_mm > 2.0
    res = rigid_register(ct, mr, backend="simpleitk", seed=42, threads=2)
    err_mm, err_deg = rigid_error(res.transform, truth, pts)
    assert err_mm < 1.0 and err_deg < 1.0, (err_mm, err_deg, transform_parameters(res.transform))
    assert res.metric_after < res.metric_before


def test_n4_removes_most_of_the_known_bias(patient: Path) -> None:
    mr = sitk.ReadImage(str(patient / "mr.nii.gz"))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(patient / "truth" / "labels_mr.nii.gz")))
    bias = sitk.GetArrayFromImage(sitk.ReadImage(str(patient / "truth" / "bias_field.nii.gz")))
    head = (labels > 0) & (labels != LABELS["couch"])
    mask = sitk.GetImageFromArray(head.astype(np.uint8))
    mask.CopyInformation(mr)
    res = n4_correct(mr, mask, shrink=4, iterations=(50, 50, 50), threads=2)
    wm = labels == LABELS["wm"]

    def cv(a: np.ndarray) -> float:
        return float(a[wm].std() / a[wm].mean())

    raw = sitk.GetArrayFromImage(mr)
    cv_raw, cv_n4 = cv(raw), cv(sitk.GetArrayFromImage(res.corrected))
    cv_truth = cv(raw / bias)  # what a perfect correction gives (texture and noise remain)
    assert cv_n4 < cv_raw
    # N4 removes more than half of the WM variation that the bias field added.
    assert cv_n4 - cv_truth < 0.5 * (cv_raw - cv_truth), (cv_raw, cv_n4, cv_truth)
