"""Head masks from CT, mask checks and mask application (paper 000 "Datasets")."""

from __future__ import annotations

import numpy as np
import phantoms as P
import pytest
import SimpleITK as sitk
from scipy import ndimage

from fedaudit.preprocess.mask import (
    MaskError,
    apply_mask,
    axial_axis,
    check_mask,
    head_mask_from_ct,
    mr_field_of_view,
    outline_agreement,
    resample_mask_to,
)


@pytest.fixture(scope="module")
def ct_case():
    ct, labels = P.ct_phantom(3.0)
    return ct, labels, head_mask_from_ct(ct)


def _arr(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img)


def test_mask_excludes_couch_includes_skull(ct_case):
    ct, labels, mask = ct_case
    m, lab = _arr(mask) > 0, _arr(labels)
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert mask.GetSize() == ct.GetSize() and mask.GetOrigin() == ct.GetOrigin()
    assert not (m & (lab == P.COUCH)).any()
    truth = _arr(P.head_truth_mask(labels)) > 0
    # the foam head rest bridging head and couch is cut; at most a stub within the opening
    # radius (6 mm = 2 voxels) of the scalp stays
    near_scalp = ndimage.binary_dilation(truth, iterations=3)
    assert not (m & (lab == P.HEADREST) & ~near_scalp).any()
    assert (m & (lab == P.BONE)).sum() >= 0.99 * (lab == P.BONE).sum()
    dice = 2 * (m & truth).sum() / (m.sum() + truth.sum())
    assert dice > 0.99


def test_mask_is_hole_free(ct_case):
    ct, labels, mask = ct_case
    m = _arr(mask) > 0
    assert np.array_equal(ndimage.binary_fill_holes(m), m)
    axis = axial_axis(ct)
    for k in range(m.shape[axis]):
        sl = np.take(m, k, axis=axis)
        assert np.array_equal(ndimage.binary_fill_holes(sl), sl), k
    # the sinus and the nasal channel are open in 3-D but enclosed slice-wise: inside the mask
    sinus = P.anatomy_labels(P.physical_points(ct)) == P.AIR
    inside_head = ndimage.binary_erosion(_arr(P.head_truth_mask(labels)) > 0, iterations=2)
    assert (m & sinus & inside_head).sum() == (sinus & inside_head).sum() > 0
    assert sitk.GetArrayViewFromImage(ct)[sinus & inside_head].max() < -500  # really air


def test_mask_on_reoriented_ct_is_the_same(ct_case):
    ct, _, mask = ct_case
    ras = sitk.DICOMOrient(ct, "RAS")
    back = sitk.DICOMOrient(head_mask_from_ct(ras), "LPS")
    assert np.array_equal(_arr(back), _arr(mask))


def test_check_mask_accepts_aligned_and_rejects_mismatched(ct_case):
    ct, labels, mask = ct_case
    mr = P.mr_phantom(2.7)[0]
    on_ct = sitk.Resample(mr, ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    info = check_mask(mask, on_ct)
    assert info["coverage"] > 0.97
    assert 1500 < info["mask_volume_ml"] < 8000
    shifted = sitk.Resample(mr, ct, P.euler((0, 0, 0), (60.0, 0.0, 0.0)), sitk.sitkLinear, 0.0,
                            sitk.sitkFloat32)
    with pytest.raises(MaskError, match="different patients"):
        check_mask(mask, shifted)
    assert issubclass(MaskError, ValueError)


def test_apply_mask_exact_outside_values(ct_case):
    ct, labels, mask = ct_case
    mr = sitk.Resample(P.mr_phantom(2.7)[0], ct, sitk.Transform(), sitk.sitkLinear, 0.0,
                       sitk.sitkFloat32)
    ct_m, mr_m = apply_mask(ct, mr, mask)
    out = _arr(mask) == 0
    assert (_arr(ct_m)[out] == -1000.0).all()
    assert (_arr(mr_m)[out] == 0.0).all()
    assert np.array_equal(_arr(ct_m)[~out], _arr(ct).astype(np.float32)[~out])
    assert ct_m.GetOrigin() == ct.GetOrigin()
    with pytest.raises(MaskError, match="different grids"):
        apply_mask(ct, P.mr_phantom(2.7)[0], mask)


def test_resample_mask_to_is_nearest_and_on_reference(ct_case):
    ct, labels, mask = ct_case
    other = P.make_grid((50, 60, 40), (4.1, 3.9, 4.7), centre=(2.0, -3.0, 1.0))
    m2 = resample_mask_to(mask, other)
    assert m2.GetSize() == other.GetSize() and m2.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(_arr(m2))) <= {0, 1}
    back = resample_mask_to(m2, ct)
    agree = (_arr(back) == _arr(mask)).mean()
    assert agree > 0.97


def test_empty_threshold_raises():
    img = sitk.Image(20, 20, 20, sitk.sitkFloat32) - 1000.0
    with pytest.raises(MaskError, match="HU"):
        head_mask_from_ct(img)


def test_int16_ct_gives_the_same_mask(ct_case):
    # Real and demo CTs are stored as int16 HU; the threshold must not depend on the pixel type.
    ct, _, mask = ct_case
    ct16 = sitk.Cast(sitk.Round(ct), sitk.sitkInt16)
    m16 = _arr(head_mask_from_ct(ct16)) > 0
    m = _arr(mask) > 0
    assert 2 * (m16 & m).sum() / (m16.sum() + m.sum()) > 0.995


def test_check_mask_rejects_an_mr_that_does_not_show_the_head(ct_case):
    # A small bright object wholly inside the head passes the coverage check (all of it is
    # inside the mask) but fills almost none of the head: it cannot be this patient's MR.
    ct, _, mask = ct_case
    arr = np.zeros(sitk.GetArrayViewFromImage(ct).shape, np.float32)
    c = [s // 2 for s in arr.shape]
    arr[c[0] - 2:c[0] + 2, c[1] - 2:c[1] + 2, c[2] - 2:c[2] + 2] = 100.0
    blob = sitk.GetImageFromArray(arr)
    blob.CopyInformation(ct)
    with pytest.raises(MaskError, match=r"fills only 0\.\d% of the head mask"):
        check_mask(mask, blob)
    mr = sitk.Resample(P.mr_phantom(2.7)[0], ct, sitk.Transform(), sitk.sitkLinear, 0.0,
                       sitk.sitkFloat32)
    assert check_mask(mask, mr)["mr_fill"] > 0.5


def test_mr_field_of_view_is_the_mr_grids_extent_on_the_ct_grid() -> None:
    """A 10 x 10 x 10 CT grid at 1 mm and an MR grid covering x in [0, 4] mm (voxel centres 0-4):
    under the identity the covered CT voxels are x = 0..4; moved 2 mm by the transform (CT point
    p -> MR point p + 2 mm), they are x = 0..2 (x + 2 must stay <= 4 mm)."""
    ct = sitk.Image(10, 10, 10, sitk.sitkFloat32)
    mr = sitk.Image(5, 10, 10, sitk.sitkFloat32)
    fov = _arr(mr_field_of_view(mr, ct, sitk.Transform())) > 0
    assert fov[:, :, :5].all() and not fov[:, :, 5:].any()
    shift = sitk.TranslationTransform(3, (2.0, 0.0, 0.0))
    moved = _arr(mr_field_of_view(mr, ct, shift)) > 0
    assert moved[:, :, :3].all() and not moved[:, :, 3:].any()


def test_outline_agreement_of_the_head_mr_and_a_shifted_head(ct_case) -> None:
    ct, _, mask = ct_case
    mr = sitk.Resample(P.mr_phantom(3.0)[0], ct, sitk.Transform(), sitk.sitkLinear, 0.0,
                       sitk.sitkFloat32)
    same = outline_agreement(mask, mr)
    assert same > 0.9  # the MR's head outline is the CT's
    # The same MR 15 mm off (another head's outline): its agreement with the mask drops to the
    # Dice of the mask with itself moved by 15 mm (an independent number), within 0.02.
    off = sitk.TranslationTransform(3, (15.0, 0.0, 0.0))
    shifted = sitk.Resample(mr, ct, off, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    m = _arr(mask) > 0
    m_off = _arr(sitk.Resample(mask, ct, off, sitk.sitkNearestNeighbor, 0)) > 0
    dice_off = 2 * (m & m_off).sum() / (m.sum() + m_off.sum())
    assert outline_agreement(mask, shifted) < same - 0.1
    assert outline_agreement(mask, shifted) == pytest.approx(dice_off, abs=0.02)
