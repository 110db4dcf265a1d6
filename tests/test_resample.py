"""One physical resampling of MR, CT and mask onto a centred cube (paper 000 "Datasets")."""

from __future__ import annotations

import numpy as np
import phantoms as P
import pytest
import SimpleITK as sitk

from fedaudit.plots.qc import qc_png
from fedaudit.preprocess.normalize import normalize_mr
from fedaudit.preprocess.qc import volume_stats
from fedaudit.preprocess.resample import cube_reference, to_cube

# An acquisition with a permuted, flipped axis order (a sagittal-like scan) and anisotropic,
# non-commensurate voxels, so nothing lines up with the cube by accident.
DIRECTION = (0.0, 0.0, -1.0,
             1.0, 0.0, 0.0,
             0.0, -1.0, 0.0)
FIDUCIAL_INDEX = (7, 31, 12)


def _volumes():
    grid = P.make_grid((40, 46, 52), (3.1, 2.7, 2.3), centre=(4.0, -6.0, 9.0),
                       direction=DIRECTION)
    shape = sitk.GetArrayViewFromImage(grid).shape
    ct_a = np.full(shape, -1000.0, np.float32)
    mr_a = np.zeros(shape, np.float32)
    m_a = np.zeros(shape, np.uint8)
    box = (slice(12, 40), slice(10, 36), slice(10, 30))
    ct_a[box], mr_a[box], m_a[box] = 0.0, 0.2, 1
    i, j, k = FIDUCIAL_INDEX  # a lone bright voxel in all three, away from the "head" box
    ct_a[k, j, i], mr_a[k, j, i], m_a[k, j, i] = 2000.0, 1.0, 1
    out = []
    for a in (mr_a, ct_a, m_a):
        img = sitk.GetImageFromArray(a)
        img.CopyInformation(grid)
        out.append(img)
    point = grid.TransformIndexToPhysicalPoint(FIDUCIAL_INDEX)
    return out[0], out[1], out[2], point


def test_fiducial_lands_on_predicted_index():
    mr, ct, mask, point = _volumes()
    size = 80
    ref = cube_reference(ct, mask, size=size, spacing_mm=1.7)
    mr_c, ct_c, m_c = to_cube(mr, ct, mask, size=size, spacing_mm=1.7)
    expect = ref.TransformPhysicalPointToIndex(point)  # (x, y, z) -> array [z, y, x]
    expect_zyx = tuple(reversed(expect))
    mr_a, ct_a, m_a = (sitk.GetArrayFromImage(x) for x in (mr_c, ct_c, m_c))
    assert np.unravel_index(np.argmax(ct_a), ct_a.shape) == expect_zyx
    assert np.unravel_index(np.argmax(mr_a), mr_a.shape) == expect_zyx
    assert m_a[expect_zyx] == 1
    for img in (mr_c, ct_c, m_c):
        assert img.GetSize() == (size, size, size)
        assert img.GetDirection() == tuple(np.eye(3).ravel())
        assert img.GetSpacing() == pytest.approx((1.7, 1.7, 1.7))
        assert img.GetOrigin() == ref.GetOrigin()


def test_outside_values_exact_and_mr_in_unit_range():
    mr, ct, mask, _ = _volumes()
    mr_c, ct_c, m_c = to_cube(mr, ct, mask, size=64)
    out = sitk.GetArrayFromImage(m_c) == 0
    ct_a, mr_a = sitk.GetArrayFromImage(ct_c), sitk.GetArrayFromImage(mr_c)
    assert (ct_a[out] == -1000.0).all() and (mr_a[out] == 0.0).all()
    assert mr_a.min() >= 0.0 and mr_a.max() <= 1.0
    assert set(np.unique(sitk.GetArrayFromImage(m_c))) <= {0, 1}


def test_outside_ct_is_the_air_value_training_assumes():
    """resample keeps its own copy of -1000 HU (fedaudit.intensity needs torch, the preprocess
    env has none); slicing, inference and the constant predictor treat AIR_HU as outside."""
    from fedaudit.intensity import AIR_HU
    from fedaudit.preprocess.resample import CT_OUTSIDE

    assert CT_OUTSIDE == AIR_HU == -1000.0


def test_default_spacing_is_in_plane_extent_and_head_centred():
    ct, labels = P.ct_phantom(3.0)  # 80 x 80 x 65 voxels: 240 x 240 mm in plane
    mask = P.head_truth_mask(labels)
    ref = cube_reference(ct, mask, size=64)
    assert ref.GetSpacing() == pytest.approx((240.0 / 64,) * 3)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    x0, y0, z0, sx, sy, sz = stats.GetBoundingBox(1)
    lo = np.array(mask.TransformContinuousIndexToPhysicalPoint((x0 - 0.5, y0 - 0.5, z0 - 0.5)))
    hi = np.array(mask.TransformContinuousIndexToPhysicalPoint(
        (x0 + sx - 0.5, y0 + sy - 0.5, z0 + sz - 0.5)))
    centre = ref.TransformContinuousIndexToPhysicalPoint((31.5, 31.5, 31.5))
    assert np.allclose(centre, (lo + hi) / 2, atol=1e-6)
    assert cube_reference(ct, mask, size=64, margin_mm=16.0).GetSpacing()[0] == \
        pytest.approx(272.0 / 64)


@pytest.mark.parametrize("orientation", ["RAS", "PIR", "ASL"])
def test_result_independent_of_input_orientation(orientation, tmp_path):
    ct, labels = P.ct_phantom(3.0)
    mask = P.head_truth_mask(labels)
    mr = normalize_mr(P.mr_phantom(3.0, grid=ct)[0], mask)
    base = to_cube(mr, ct, mask, size=56)
    turned = [sitk.DICOMOrient(x, orientation) for x in (mr, ct, mask)]
    assert sitk.GetArrayViewFromImage(turned[1]).shape != sitk.GetArrayViewFromImage(ct).shape \
        or turned[1].GetDirection() != ct.GetDirection()
    other = to_cube(*turned, size=56)
    for a, b, tol in zip(base, other, (1e-4, 1e-2, 0), strict=True):
        assert a.GetOrigin() == pytest.approx(b.GetOrigin())
        diff = np.abs(sitk.GetArrayFromImage(a).astype(float) - sitk.GetArrayFromImage(b))
        assert (diff > tol).mean() < 1e-3, orientation
    if orientation == "RAS":
        qc_png(*base, tmp_path / "qc.png", title="phantom")
        assert (tmp_path / "qc.png").stat().st_size > 10_000
        stats = volume_stats(base[1], base[2])
        assert stats["shape"] == [56, 56, 56] and stats["min"] >= -1000.0
        assert 1500 < stats["mask_volume_ml"] < 8000
