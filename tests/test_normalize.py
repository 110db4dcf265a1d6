"""MR normalisation to [0, 1] (paper 000 "Datasets")."""

from __future__ import annotations

import numpy as np
import phantoms as P
import pytest
import SimpleITK as sitk

from fedaudit.preprocess.normalize import normalize_mr


@pytest.fixture(scope="module")
def mr_case():
    mr, labels, _ = P.mr_phantom(4.0)
    return mr + 50.0, P.head_truth_mask(labels)  # offset: min-max must not assume min = 0


def test_minmax_range_and_outside(mr_case):
    mr, mask = mr_case
    out = normalize_mr(mr, mask)
    a, m = sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(mask) > 0
    assert out.GetPixelID() == sitk.sitkFloat32
    assert a[m].min() == 0.0 and a[m].max() == 1.0
    assert (a[~m] == 0.0).all()
    assert out.GetOrigin() == mr.GetOrigin() and out.GetSpacing() == mr.GetSpacing()
    src = sitk.GetArrayFromImage(mr)[m]
    expect = (src - src.min()) / (src.max() - src.min())
    assert np.allclose(a[m], expect, atol=1e-6)


def test_robust_ignores_single_hot_voxel(mr_case):
    mr, mask = mr_case
    m = sitk.GetArrayFromImage(mask) > 0
    hot_arr = sitk.GetArrayFromImage(mr)
    k, j, i = np.argwhere(m)[len(np.argwhere(m)) // 2]
    hot_arr[k, j, i] = 1e6
    hot = sitk.GetImageFromArray(hot_arr)
    hot.CopyInformation(mr)
    clean = sitk.GetArrayFromImage(normalize_mr(mr, mask, method="robust"))
    robust = sitk.GetArrayFromImage(normalize_mr(hot, mask, method="robust"))
    minmax = sitk.GetArrayFromImage(normalize_mr(hot, mask))
    assert robust[m].min() == 0.0 and robust[m].max() == 1.0
    assert (robust[~m] == 0.0).all()
    # robust: nearly unchanged by the hot voxel; min-max: the brain collapses near 0
    assert np.median(np.abs(robust[m] - clean[m])) < 0.01
    assert np.median(minmax[m]) < 0.01 < np.median(robust[m])


def test_bad_inputs(mr_case):
    mr, mask = mr_case
    with pytest.raises(ValueError, match="minmax"):
        normalize_mr(mr, mask, method="zscore")
    with pytest.raises(ValueError, match="empty"):
        normalize_mr(mr, mask * 0)
    const = sitk.Image(mr.GetSize(), sitk.sitkFloat32) + 5.0
    const.CopyInformation(mr)
    with pytest.raises(ValueError, match="constant"):
        normalize_mr(const, mask)
