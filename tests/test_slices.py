"""Random Multi-2D slice sampling, augmentation and validation slices on small synthetic heads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from fedaudit.data.slices import (
    ORIENTATIONS,
    SliceDataset,
    SliceRef,
    Volume,
    axial_slices,
    load_volume,
    plan_epoch,
    slice_indices,
)
from fedaudit.intensity import AIR_HU, HU_RANGE, hu_to_unit
from fedaudit.io import VolumeError, write_volume

N = 32
CT_PER_MR = 2000.0  # CT = AIR_HU + CT_PER_MR * MR: stays inside the unit-CT range, no clipping
AIR_UNIT = float(hu_to_unit(np.float32(AIR_HU)))


def make_volume(name: str = "p0", semi: tuple[float, float, float] = (10, 12, 9),
                n: int = N) -> Volume:
    """An ellipsoid head (not touching the cube's faces) with an asymmetric MR pattern inside
    and a CT that is an exact linear function of the MR."""
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32),) * 3, indexing="ij")
    c = (n - 1) / 2
    mask = ((z - c) / semi[0]) ** 2 + ((y - c) / semi[1]) ** 2 + ((x - c) / semi[2]) ** 2 <= 1
    # A gradient along x (left-right) makes flips visible; the sinusoid makes rotations visible.
    pattern = 0.2 + 0.5 * x / (n - 1) + 0.2 * np.sin(y / 2.0) * np.cos(z / 3.0)
    mr = np.where(mask, pattern, 0.0).astype(np.float32)
    ct = (AIR_HU + CT_PER_MR * mr).astype(np.float32)
    return Volume(name, mr, ct, mask)


def write_patient(folder: Path, vol: Volume, ct: np.ndarray | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in (("mr", vol.mr), ("ct", vol.ct if ct is None else ct),
                      ("mask", vol.mask.astype(np.uint8))):
        write_volume(sitk.GetImageFromArray(arr), folder / f"{stem}.nii.gz")
    return folder


@pytest.fixture(scope="module")
def volumes() -> list[Volume]:
    return [make_volume("p0"), make_volume("p1", (8, 13, 11)), make_volume("p2", (13, 7, 10))]


# --- loading --------------------------------------------------------------------------------

def test_load_volume_round_trip(tmp_path: Path) -> None:
    vol = make_volume()
    loaded = load_volume(write_patient(tmp_path / "patient-07", vol))
    assert loaded.name == "patient-07"
    assert loaded.mr.dtype == np.float32 and loaded.ct.dtype == np.float32
    assert loaded.mask.dtype == bool
    np.testing.assert_array_equal(loaded.mr, vol.mr)
    np.testing.assert_array_equal(loaded.ct, vol.ct)
    np.testing.assert_array_equal(loaded.mask, vol.mask)
    assert load_volume(tmp_path / "patient-07", name="x").name == "x"


def test_load_volume_names_the_file_with_the_wrong_shape(tmp_path: Path) -> None:
    vol = make_volume()
    folder = write_patient(tmp_path / "p", vol, ct=vol.ct[:, :, :30].copy())
    with pytest.raises(VolumeError, match=r"ct\.nii\.gz.*differs from the MR size"):
        load_volume(folder)


def test_load_volume_rejects_a_non_cube(tmp_path: Path) -> None:
    vol = make_volume()
    flat = Volume.__new__(Volume)  # bypass the cube check to write a non-cubic patient
    flat.mr, flat.ct, flat.mask = vol.mr[:30], vol.ct[:30], vol.mask[:30]
    folder = write_patient(tmp_path / "p", flat)
    with pytest.raises(VolumeError, match=r"mr\.nii\.gz.*not a cube"):
        load_volume(folder)


def test_load_volume_names_a_missing_file(tmp_path: Path) -> None:
    folder = write_patient(tmp_path / "p", make_volume())
    (folder / "mask.nii.gz").unlink()
    with pytest.raises(VolumeError, match=r"mask\.nii\.gz"):
        load_volume(folder)


# --- slice selection and the epoch plan -----------------------------------------------------

@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_slice_indices_are_exactly_the_head_slices(orientation: str) -> None:
    vol = make_volume()
    take = {"axial": lambda k: vol.mask[k], "coronal": lambda k: vol.mask[:, k],
            "sagittal": lambda k: vol.mask[:, :, k]}[orientation]
    expected = [k for k in range(N) if take(k).any()]
    got = slice_indices(vol, orientation)
    assert got.tolist() == expected
    assert 0 < len(got) < N  # the ellipsoid leaves empty slices at both ends
    big = [k for k in range(N) if take(k).sum() >= 50]
    assert slice_indices(vol, orientation, min_mask_voxels=50).tolist() == big


def test_unknown_orientation_is_rejected() -> None:
    with pytest.raises(ValueError, match="orientation"):
        slice_indices(make_volume(), "oblique")


def _by_volume(refs: list[SliceRef]) -> dict[int, list[SliceRef]]:
    out: dict[int, list[SliceRef]] = {}
    for r in refs:
        out.setdefault(r.volume, []).append(r)
    return out


def test_epoch_uses_one_orientation_and_all_head_slices_per_volume(volumes: list[Volume]) -> None:
    refs = plan_epoch(volumes, np.random.default_rng(1), max_slices_per_volume=None)
    per_volume = _by_volume(refs)
    assert sorted(per_volume) == [0, 1, 2]
    for vi, vrefs in per_volume.items():
        orientations = {r.orientation for r in vrefs}
        assert len(orientations) == 1
        expected = slice_indices(volumes[vi], orientations.pop()).tolist()
        assert sorted(r.index for r in vrefs) == expected
    # shuffled across volumes, not volume after volume
    assert [r.volume for r in refs] != sorted(r.volume for r in refs)


def test_epoch_cap_takes_distinct_head_slices(volumes: list[Volume]) -> None:
    refs = plan_epoch(volumes, np.random.default_rng(2), max_slices_per_volume=5)
    for vi, vrefs in _by_volume(refs).items():
        idx = [r.index for r in vrefs]
        assert len(idx) == 5 == len(set(idx))
        assert set(idx) <= set(slice_indices(volumes[vi], vrefs[0].orientation).tolist())
    with pytest.raises(ValueError, match="max_slices_per_volume"):
        plan_epoch(volumes, np.random.default_rng(2), max_slices_per_volume=0)


def test_orientations_and_flips_are_random_over_epochs(volumes: list[Volume]) -> None:
    seen: set[str] = set()
    flips: list[bool] = []
    for seed in range(20):
        for r in plan_epoch(volumes, np.random.default_rng(seed), max_slices_per_volume=None):
            seen.add(r.orientation)
            if r.orientation == "sagittal":
                assert not r.flip  # a sagittal left-right flip is just another slice
            else:
                flips.append(r.flip)
    assert seen == set(ORIENTATIONS)
    # p = 0.5 flips; hundreds of draws, so 0.4-0.6 is many standard errors wide
    assert 0.4 < np.mean(flips) < 0.6


def test_same_seed_same_plan_and_same_augmented_tensors(volumes: list[Volume]) -> None:
    plans = [plan_epoch(volumes, np.random.default_rng(s), max_slices_per_volume=4)
             for s in (7, 7, 8)]
    assert plans[0] == plans[1]
    assert plans[0] != plans[2]
    a = SliceDataset(volumes, plans[0], augment=True)
    b = SliceDataset(volumes, plans[1], augment=True)
    for i in range(len(a)):
        for x, y in zip(a[i], b[i], strict=True):
            assert torch.equal(x, y)


def test_augmentation_depends_only_on_the_ref(volumes: list[Volume]) -> None:
    refs = plan_epoch(volumes, np.random.default_rng(3), max_slices_per_volume=3)
    ds = SliceDataset(volumes, refs, augment=True)
    first = ds[4]
    for i in reversed(range(len(ds))):  # another access order, as another worker would do
        ds[i]
    assert all(torch.equal(x, y) for x, y in zip(first, ds[4], strict=True))
    # a different augmentation seed for the same slice gives a different sample
    other = SliceRef(refs[4].volume, refs[4].orientation, refs[4].index, refs[4].flip,
                     refs[4].aug_seed + 1)
    assert not torch.equal(SliceDataset(volumes, [other], augment=True)[0][0], first[0])


# --- augmentation ---------------------------------------------------------------------------

def test_mr_and_ct_get_the_same_geometric_transform(volumes: list[Volume]) -> None:
    refs = plan_epoch(volumes, np.random.default_rng(4), max_slices_per_volume=6)
    ds = SliceDataset(volumes, refs, augment=True, rotate_deg=10, translate_frac=0.05)
    plain = SliceDataset(volumes, refs, augment=False)
    changed = 0
    for i in range(len(ds)):
        mr, ct = ds[i]
        assert mr.shape == ct.shape == (1, N, N) and mr.dtype == ct.dtype == torch.float32
        # CT was built as an exact linear function of MR; the same resampling of both keeps it
        # (float32 rounding only), a different one would break it by ~0.1 where tissue moved.
        expected = AIR_UNIT + CT_PER_MR / HU_RANGE * mr
        torch.testing.assert_close(ct, expected, atol=1e-5, rtol=0)
        changed += not torch.allclose(mr, plain[i][0], atol=1e-3)
    assert changed >= len(ds) - 1  # the augmentation really moves the slices


def _moments(img: np.ndarray) -> tuple[float, float, float]:
    """Centroid (row, col) and principal-axis angle (degrees) of a non-negative image."""
    r, c = np.indices(img.shape, dtype=float)
    m = img.sum()
    r0, c0 = (img * r).sum() / m, (img * c).sum() / m
    mu20 = (img * (r - r0) ** 2).sum()
    mu02 = (img * (c - c0) ** 2).sum()
    mu11 = (img * (r - r0) * (c - c0)).sum()
    return r0, c0, float(np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02)))


def test_rotation_and_translation_stay_within_their_ranges() -> None:
    # A uniform, elongated ellipse (semi-axes 12 x 5 in the axial plane) whose principal axis
    # is the row axis: its angle is the rotation, its centroid shift the translation.
    vol = make_volume(semi=(10, 12, 5))
    vol.mr = vol.mask.astype(np.float32)
    k = N // 2
    _, _, angle0 = _moments(vol.mr[k])
    r_0, c_0, _ = _moments(vol.mr[k])
    refs = [SliceRef(0, "axial", k, False, seed) for seed in range(12)]
    rot = SliceDataset([vol], refs, augment=True, rotate_deg=10, translate_frac=0)
    angles = [_moments(rot[i][0][0].numpy())[2] - angle0 for i in range(len(refs))]
    assert max(abs(a) for a in angles) <= 10.5  # +-10 deg, plus interpolation error
    assert max(abs(a) for a in angles) > 3  # rotations do happen
    shift = SliceDataset([vol], refs, augment=True, rotate_deg=0, translate_frac=0.1)
    shifts = []
    for i in range(len(refs)):
        r1, c1, _ = _moments(shift[i][0][0].numpy())
        shifts += [abs(r1 - r_0), abs(c1 - c_0)]
    assert max(shifts) <= 0.1 * N + 0.1  # +-3.2 voxels per axis
    assert max(shifts) > 1


@pytest.mark.parametrize("orientation", ["axial", "coronal"])
def test_flip_mirrors_left_right(orientation: str) -> None:
    vol = make_volume()
    k = N // 2
    raw = vol.mr[k] if orientation == "axial" else vol.mr[:, k]
    refs = [SliceRef(0, orientation, k, True, 0)]
    # no rotation/translation: the flip alone
    mr, ct = SliceDataset([vol], refs, augment=True, rotate_deg=0, translate_frac=0)[0]
    np.testing.assert_array_equal(mr[0].numpy(), raw[:, ::-1])
    np.testing.assert_allclose(ct[0].numpy(), hu_to_unit(AIR_HU + CT_PER_MR * raw[:, ::-1]),
                               atol=1e-6)
    # validation (augment=False) never flips
    mr_plain, _ = SliceDataset([vol], refs, augment=False)[0]
    np.testing.assert_array_equal(mr_plain[0].numpy(), raw)


def test_ct_unit_is_in_unit_range_even_for_out_of_range_hu(volumes: list[Volume]) -> None:
    vol = make_volume()
    vol.ct[vol.mask] = 3500.0  # beyond HU_MAX: must clip to 1
    vol.ct[N // 2, N // 2, N // 2] = -2000.0  # below HU_MIN: must clip to 0
    refs = plan_epoch([vol], np.random.default_rng(5), max_slices_per_volume=8)
    for augment in (True, False):
        for _, ct in SliceDataset([vol], refs, augment=augment):
            assert float(ct.min()) >= 0.0 and float(ct.max()) <= 1.0
    # background padding is air (-1000 HU), not -1024 HU
    mr, ct = SliceDataset([vol], refs, augment=True)[0]
    assert float(ct.min()) >= AIR_UNIT - 1e-6


# --- validation slices ----------------------------------------------------------------------

def test_axial_slices_cover_the_head_evenly() -> None:
    vol = make_volume()
    head = slice_indices(vol, "axial")
    mr, ct, mask = axial_slices(vol, max_slices=None)
    assert mr.shape == ct.shape == mask.shape == (len(head), 1, N, N)
    assert mask.dtype == torch.bool and mr.dtype == ct.dtype == torch.float32
    np.testing.assert_array_equal(mr[:, 0].numpy(), vol.mr[head])
    np.testing.assert_allclose(ct[:, 0].numpy(), hu_to_unit(vol.ct[head]))
    assert bool(mask.flatten(1).any(dim=1).all())

    mr5, _, _ = axial_slices(vol, max_slices=5)
    chosen = [int(np.flatnonzero((vol.mr == m[0].numpy()).all(axis=(1, 2)))[0]) for m in mr5]
    assert chosen[0] == head[0] and chosen[-1] == head[-1]  # spans the head
    gaps = np.diff(chosen)
    assert gaps.max() - gaps.min() <= 1  # evenly spaced
    assert torch.equal(axial_slices(vol, max_slices=5)[0], mr5)  # deterministic
