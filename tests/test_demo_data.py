"""Embedded demo data (fedaudit.data.centers / demo / phantom) and the per-center montage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fedaudit.data import demo as demo_module
from fedaudit.data.centers import CENTER_PROFILES, PAPER_PATIENT_COUNTS, patient_id
from fedaudit.data.demo import LABELS, generate_patient, scaled_profile
from fedaudit.data.phantom import BRAIN_LABELS
from fedaudit.io import read_volume

SCALE = 3.5
SEED = 42


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Patient 0 of every center, patient 1 of A, and patient 0 of A generated a second time."""
    root = tmp_path_factory.mktemp("demo")
    out: dict[str, Path] = {}
    for center in CENTER_PROFILES:
        out[f"{center}0"] = root / center / patient_id(center, 0)
        generate_patient(center, 0, SEED, out[f"{center}0"], resolution_scale=SCALE)
    out["A1"] = root / "A" / patient_id("A", 1)
    generate_patient("A", 1, SEED, out["A1"], resolution_scale=SCALE)
    out["A0bis"] = root / "again" / patient_id("A", 0)
    generate_patient("A", 0, SEED, out["A0bis"], resolution_scale=SCALE)
    return out


def arr(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def truth(folder: Path) -> dict:
    return json.loads((folder / "truth" / "truth.json").read_text())


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))


# --------------------------------------------------------------------------- profiles and ids


def test_patient_id_is_synthrad_style() -> None:
    assert patient_id("A", 0) == "1BA001"
    assert patient_id("E", 22) == "1BE023"
    assert patient_id("C", 119) == "1BC120"


def test_profiles_follow_paper_table_1() -> None:
    assert sorted(CENTER_PROFILES) == ["A", "B", "C", "D", "E"]
    assert PAPER_PATIENT_COUNTS == {"A": 15, "B": 14, "C": 21, "D": 29, "E": 23}
    assert sum(PAPER_PATIENT_COUNTS.values()) == 102
    a, c = CENTER_PROFILES["A"], CENTER_PROFILES["C"]
    assert a.field_strength_t == 3.0 and a.kvp == 140 and a.mr_size == (256, 176, 256)
    assert c.field_strength_t == 1.5 and c.ct_size[:2] == (512, 512)
    assert [k for k, p in CENTER_PROFILES.items() if p.ships_mask] == ["D", "E"]
    assert len({p.mr_orientation for p in CENTER_PROFILES.values()}) >= 3
    for p in CENTER_PROFILES.values():
        assert sitk.DICOMOrientImageFilter.GetDirectionCosinesFromOrientation(p.mr_orientation)
        assert sitk.DICOMOrientImageFilter.GetDirectionCosinesFromOrientation(p.ct_orientation)


def test_generator_uses_the_centers_module_table() -> None:
    # Config validation and the workflow read fedaudit.data.centers; the files must come from the
    # same profiles, not a stale copy.
    assert demo_module.CENTER_PROFILES is CENTER_PROFILES
    assert demo_module.patient_id is patient_id


@pytest.mark.parametrize("scale", [1.0, 2.0, 3.5, 4.0])
def test_scaled_profile_keeps_field_of_view(scale: float) -> None:
    for prof in CENTER_PROFILES.values():
        sp = scaled_profile(prof, scale)
        for mod in ("mr", "ct"):
            fov0 = np.multiply(getattr(prof, f"{mod}_size"), getattr(prof, f"{mod}_spacing"))
            fov1 = np.multiply(getattr(sp, f"{mod}_size"), getattr(sp, f"{mod}_spacing"))
            size = np.array(getattr(sp, f"{mod}_size"))
            assert (size >= 8).all()
            small = size > 8  # axes clamped at 8 voxels may grow
            assert np.all(np.abs(fov1 - fov0)[small] <= 0.5 * np.array(
                getattr(sp, f"{mod}_spacing"))[small] + 1e-6)
        assert sp.kvp == prof.kvp and sp.mr_orientation == prof.mr_orientation
    assert scaled_profile(CENTER_PROFILES["A"], 1.0) == CENTER_PROFILES["A"]
    with pytest.raises(ValueError):
        scaled_profile(CENTER_PROFILES["A"], 0)


def test_unknown_center_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="Z"):
        generate_patient("Z", 0, SEED, tmp_path)


# --------------------------------------------------------------------------- files and geometry


@pytest.mark.parametrize("center", list(CENTER_PROFILES))
def test_files_and_geometry_match_profile(demo: dict[str, Path], center: str) -> None:
    folder = demo[f"{center}0"]
    prof = scaled_profile(CENTER_PROFILES[center], SCALE)
    for name in ("mr.nii.gz", "ct.nii.gz", "truth/truth.json", "truth/rigid.tfm",
                 "truth/bias_field.nii.gz", "truth/labels_mr.nii.gz", "truth/labels_ct.nii.gz"):
        assert (folder / name).is_file(), name
    assert (folder / "mask.nii.gz").exists() == prof.ships_mask
    orient = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines
    for mod, role in (("mr", "MR"), ("ct", "CT")):
        img = read_volume(folder / f"{mod}.nii.gz", role)
        assert img.GetSize() == getattr(prof, f"{mod}_size")
        np.testing.assert_allclose(img.GetSpacing(), getattr(prof, f"{mod}_spacing"), rtol=1e-5)
        assert orient(img.GetDirection()) == getattr(prof, f"{mod}_orientation")
        for lab in (f"labels_{mod}",):
            li = sitk.ReadImage(str(folder / "truth" / f"{lab}.nii.gz"))
            assert li.GetSize() == img.GetSize() and li.GetPixelID() == sitk.sitkUInt8
            np.testing.assert_allclose(li.GetOrigin(), img.GetOrigin(), atol=1e-3)
    ct = sitk.ReadImage(str(folder / "ct.nii.gz"))
    assert ct.GetPixelID() == sitk.sitkInt16
    mr = sitk.ReadImage(str(folder / "mr.nii.gz"))
    assert mr.GetPixelID() == sitk.sitkFloat32
    m = sitk.GetArrayViewFromImage(mr)
    assert np.isfinite(m).all() and m.min() >= 0.0


@pytest.mark.parametrize("center", list(CENTER_PROFILES))
def test_head_lies_inside_both_fields_of_view(demo: dict[str, Path], center: str) -> None:
    """Brain and skull never touch a face of either grid, except the neck leaving at the
    bottom (the cord and its bony canal continue downward)."""
    folder = demo[f"{center}0"]
    inside = (*BRAIN_LABELS, LABELS["bone_cortical"], LABELS["bone_diploe"])
    for mod in ("mr", "ct"):
        lab = sitk.DICOMOrient(sitk.ReadImage(str(folder / "truth" / f"labels_{mod}.nii.gz")),
                               "LPS")
        a = np.isin(sitk.GetArrayViewFromImage(lab), inside)  # z (I->S), y (A->P), x (R->L)
        faces = {"top": a[-1], "anterior": a[:, 0], "posterior": a[:, -1], "right": a[:, :, 0],
                 "left": a[:, :, -1]}
        # Lower than the skull base the canal may graze the side faces of a rotated head.
        z_cut = a.shape[0] // 3
        faces["anterior"], faces["posterior"] = a[z_cut:, 0], a[z_cut:, -1]
        faces["right"], faces["left"] = a[z_cut:, :, 0], a[z_cut:, :, -1]
        touching = [k for k, f in faces.items() if f.any()]
        assert not touching, f"{center} {mod}: head touches {touching}"


def test_ct_values_are_plausible_hu(demo: dict[str, Path]) -> None:
    for center in CENTER_PROFILES:
        folder = demo[f"{center}0"]
        ct, lab = arr(folder / "ct.nii.gz"), arr(folder / "truth" / "labels_ct.nii.gz")
        assert -1024 <= ct.min() <= -990
        assert (ct > 700).sum() > 50, center
        assert ct.max() < 2500
        for name in ("gm", "wm"):
            med = float(np.median(ct[lab == LABELS[name]]))
            assert 0 < med < 60, (center, name, med)
        brain = np.isin(lab, BRAIN_LABELS)
        assert 0 < float(np.median(ct[brain])) < 60
        assert float(np.median(ct[lab == LABELS["fat"]])) < -30
        assert float(np.median(ct[lab == LABELS["bone_cortical"]])) > 700
        assert float(np.median(ct[lab == 0])) < -950
        # GM is denser than WM on CT, and the couch exists only on the CT grid.
        assert np.median(ct[lab == LABELS["gm"]]) > np.median(ct[lab == LABELS["wm"]])
        assert (lab == LABELS["couch"]).any()
        assert not (arr(folder / "truth" / "labels_mr.nii.gz") == LABELS["couch"]).any()


def test_kvp_lowers_bone_hu() -> None:
    """140 kVp (center A) gives lower bone HU than 120 kVp for the same tissue."""
    from fedaudit.data.demo import _tissue_values

    p = {"mr_gain": 1.0, "mr_tissue_jitter": {}, "ct_tissue_jitter_hu": {},
         "bone_density_factor": 1.0}
    _, hu140 = _tissue_values(CENTER_PROFILES["A"], p)
    _, hu120 = _tissue_values(CENTER_PROFILES["B"], p)
    assert hu140["bone_cortical"] < hu120["bone_cortical"]
    assert 700 <= hu120["bone_diploe"] < hu120["bone_cortical"] <= 1500


def test_mr_has_t1_contrast(demo: dict[str, Path]) -> None:
    for center in CENTER_PROFILES:
        folder = demo[f"{center}0"]
        mr = arr(folder / "mr.nii.gz") / arr(folder / "truth" / "bias_field.nii.gz")
        lab = arr(folder / "truth" / "labels_mr.nii.gz")
        med = {k: float(np.median(mr[lab == LABELS[k]])) for k in ("wm", "gm", "csf", "fat")}
        assert med["wm"] > med["gm"] > med["csf"], (center, med)
        assert med["fat"] > med["gm"]
        assert float(np.median(mr[lab == 0])) < 0.1 * med["wm"]


def test_ships_mask_is_the_head_without_couch(demo: dict[str, Path]) -> None:
    for center in ("D", "E"):
        folder = demo[f"{center}0"]
        mask_img = read_volume(folder / "mask.nii.gz", "mask")
        ct = sitk.ReadImage(str(folder / "ct.nii.gz"))
        assert mask_img.GetPixelID() == sitk.sitkUInt8 and mask_img.GetSize() == ct.GetSize()
        np.testing.assert_allclose(mask_img.GetOrigin(), ct.GetOrigin(), atol=1e-3)
        mask = sitk.GetArrayFromImage(mask_img)
        lab = arr(folder / "truth" / "labels_ct.nii.gz")
        assert set(np.unique(mask)) <= {0, 1}
        assert not (mask.astype(bool) & (lab == LABELS["couch"])).any()
        assert mask[np.isin(lab, BRAIN_LABELS)].all()


def test_couch_does_not_touch_the_head(demo: dict[str, Path]) -> None:
    from scipy import ndimage

    for center in CENTER_PROFILES:
        lab = arr(demo[f"{center}0"] / "truth" / "labels_ct.nii.gz")
        body = (lab > 0) & (lab != LABELS["couch"])
        assert not (ndimage.binary_dilation(body) & (lab == LABELS["couch"])).any(), center


# --------------------------------------------------------------------------- ground truth


def test_truth_record_states_the_convention(demo: dict[str, Path]) -> None:
    t = truth(demo["A0"])
    for key in ("rotation_deg", "translation_mm", "center_mm", "matrix", "convention",
                "anatomy", "labels", "mr", "ct"):
        assert key in t
    assert "fixed=CT" in t["convention"] and "moving=MR" in t["convention"]
    assert t["labels"] == LABELS
    tfm = sitk.ReadTransform(str(demo["A0"] / "truth" / "rigid.tfm"))
    euler = sitk.Euler3DTransform(tfm)
    np.testing.assert_allclose(np.array(euler.GetMatrix()).reshape(3, 3), t["matrix"], atol=1e-9)
    np.testing.assert_allclose(euler.GetTranslation(), t["translation_mm"], atol=1e-9)
    np.testing.assert_allclose(euler.GetCenter(), t["center_mm"], atol=1e-9)
    np.testing.assert_allclose(np.rad2deg([euler.GetAngleX(), euler.GetAngleY(),
                                           euler.GetAngleZ()]), t["rotation_deg"], atol=1e-9)
    # A few mm / degrees: the misalignment is real.
    assert np.linalg.norm(t["translation_mm"]) > 3.0


@pytest.mark.parametrize("center", ["A", "C", "E"])
def test_truth_transform_maps_ct_anatomy_onto_mr_anatomy(demo: dict[str, Path],
                                                         center: str) -> None:
    """Independent check of the stated direction: resampling the MR labels onto the CT grid
    through rigid.tfm (fixed=CT, moving=MR) reproduces the CT labels."""
    folder = demo[f"{center}0"]
    lab_mr = sitk.ReadImage(str(folder / "truth" / "labels_mr.nii.gz"))
    lab_ct = sitk.ReadImage(str(folder / "truth" / "labels_ct.nii.gz"))
    tfm = sitk.ReadTransform(str(folder / "truth" / "rigid.tfm"))
    ref = np.isin(sitk.GetArrayViewFromImage(lab_ct), BRAIN_LABELS)

    def brain_dice(transform: sitk.Transform) -> float:
        moved = sitk.Resample(lab_mr, lab_ct, transform, sitk.sitkNearestNeighbor, 0)
        return dice(np.isin(sitk.GetArrayViewFromImage(moved), BRAIN_LABELS), ref)

    aligned, identity = brain_dice(tfm), brain_dice(sitk.Transform())
    inverse = brain_dice(tfm.GetInverse())
    assert aligned > 0.9, (aligned, identity)
    assert identity < aligned - 0.03, (aligned, identity)
    assert inverse < aligned - 0.03, (aligned, inverse)


def test_bias_field_division_flattens_white_matter(demo: dict[str, Path]) -> None:
    from scipy import ndimage

    for center in CENTER_PROFILES:
        folder = demo[f"{center}0"]
        mr = arr(folder / "mr.nii.gz")
        bias = arr(folder / "truth" / "bias_field.nii.gz")
        lab = arr(folder / "truth" / "labels_mr.nii.gz")
        assert bias.min() > 0
        wm = ndimage.binary_erosion(lab == LABELS["wm"])
        assert wm.sum() > 100

        def cv(x: np.ndarray, m: np.ndarray) -> float:
            return float(x[m].std() / x[m].mean())

        assert cv(mr / bias, wm) < cv(mr, wm), center


# --------------------------------------------------------------------------- variation


def test_same_seed_gives_identical_arrays(demo: dict[str, Path]) -> None:
    a, b = demo["A0"], demo["A0bis"]
    for name in ("mr.nii.gz", "ct.nii.gz", "truth/labels_mr.nii.gz", "truth/labels_ct.nii.gz",
                 "truth/bias_field.nii.gz"):
        x, y = arr(a / name), arr(b / name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    assert truth(a) == truth(b)


def test_patients_differ(demo: dict[str, Path]) -> None:
    t0, t1 = truth(demo["A0"]), truth(demo["A1"])
    for key in ("skull_thickness_mm", "ventricle_dilation_mm", "affine_scale"):
        assert t0["anatomy"][key] != t1["anatomy"][key]
    assert t0["rotation_deg"] != t1["rotation_deg"]

    def tissue_volumes(folder: Path) -> np.ndarray:
        lab = arr(folder / "truth" / "labels_ct.nii.gz")
        return np.array([(lab == LABELS[k]).sum() for k in
                         ("csf", "gm", "wm", "ventricles", "bone_cortical", "soft_tissue")], float)

    v0, v1 = tissue_volumes(demo["A0"]), tissue_volumes(demo["A1"])
    rel = np.abs(v0 - v1) / np.maximum(v0, v1)
    assert rel.max() > 0.1, rel
    # Same grid, different patients: the images differ far beyond noise.
    ct0, ct1 = arr(demo["A0"] / "ct.nii.gz"), arr(demo["A1"] / "ct.nii.gz")
    assert ct0.shape == ct1.shape
    assert float(np.mean(np.abs(ct0.astype(float) - ct1.astype(float)))) > 20.0


# --------------------------------------------------------------------------- montage


def test_center_montage_writes_png(demo: dict[str, Path], tmp_path: Path) -> None:
    from fedaudit.plots.montage import center_montage, folder_files

    out = tmp_path / "montage" / "A.png"
    rows = [folder_files(demo[k]) for k in ("A0", "A1", "D0")]
    center_montage(rows, out, "Center A: raw MR | CT | mask")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    with pytest.raises(ValueError):
        center_montage([], tmp_path / "empty.png", "nothing")


def test_a_patient_from_the_template_file_equals_a_fresh_one(tmp_path: Path) -> None:
    """Rule demo_template builds the head model once per study: a patient generated from that
    file is the patient generated with a template built in the process, byte for byte."""
    import hashlib

    from fedaudit.data import phantom

    spacing = demo_module.model_spacing(5.0)
    generate_patient("B", 1, 7, tmp_path / "fresh", resolution_scale=5.0)
    phantom.save_template(phantom.build_template_brain(spacing), str(tmp_path / "t.npz"))
    try:
        loaded = phantom.use_template_file(str(tmp_path / "t.npz"))
        assert phantom.template_brain(spacing) is loaded
        generate_patient("B", 1, 7, tmp_path / "file", resolution_scale=5.0)
    finally:
        phantom._FROM_FILE.clear()  # later tests build their own
    files = sorted(p.relative_to(tmp_path / "fresh") for p in (tmp_path / "fresh").rglob("*")
                   if p.is_file())
    assert len(files) >= 4
    for f in files:
        assert (hashlib.sha256((tmp_path / "fresh" / f).read_bytes()).digest()
                == hashlib.sha256((tmp_path / "file" / f).read_bytes()).digest()), f
