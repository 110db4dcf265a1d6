"""Bad volumes are rejected with an error that names the file and the problem."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fedaudit.io import VolumeError, read_header, read_volume, write_volume


def _vol(shape=(8, 9, 10)) -> sitk.Image:
    arr = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 1.0, 2.0))
    return img


def test_roundtrip_keeps_geometry(tmp_path: Path) -> None:
    img = _vol()
    img.SetOrigin((1.0, -2.0, 3.0))
    write_volume(img, tmp_path / "a.nii.gz")
    back = read_volume(tmp_path / "a.nii.gz", "MR")
    assert back.GetSpacing() == pytest.approx(img.GetSpacing())
    assert back.GetOrigin() == pytest.approx(img.GetOrigin(), abs=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))
    assert not list(tmp_path.glob(".tmp-*")), "no temporary file left behind"


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "ct.nii.gz"
    write_volume(_vol((32, 32, 32)), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VolumeError) as err:
        read_volume(path, "CT")
    assert str(err.value).startswith(str(path)) and "cannot be read" in str(err.value)


def test_not_gzip_at_all(tmp_path: Path) -> None:
    path = tmp_path / "mr.nii.gz"
    path.write_bytes(gzip.compress(b"this is not a nifti header"))
    with pytest.raises(VolumeError, match=r"mr.nii.gz: MR file cannot be read"):
        read_volume(path, "MR")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match=r"ct.nii.gz: CT file does not exist"):
        read_volume(tmp_path / "ct.nii.gz", "CT")


def test_nan_voxels(tmp_path: Path) -> None:
    arr = sitk.GetArrayFromImage(_vol())
    arr[1, 2, 3] = np.nan
    arr[2, 2, 2] = np.inf
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "mr.nii.gz"))
    with pytest.raises(VolumeError, match=r"mr.nii.gz: MR contains 2 NaN or infinite voxels"):
        read_volume(tmp_path / "mr.nii.gz", "MR")


def test_not_3d(tmp_path: Path) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((5, 6), np.float32)), str(tmp_path / "x.nii"))
    with pytest.raises(VolumeError, match=r"x.nii: CT is 2-D; a 3-D volume is required"):
        read_volume(tmp_path / "x.nii", "CT")
    vec = sitk.GetImageFromArray(np.ones((4, 5, 6, 3), np.float32), isVector=True)
    sitk.WriteImage(vec, str(tmp_path / "v.mha"))
    with pytest.raises(VolumeError, match=r"v.mha: MR has 3 components per voxel"):
        read_volume(tmp_path / "v.mha", "MR")


def test_empty_volume_and_mask(tmp_path: Path) -> None:
    zeros = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.float32))
    sitk.WriteImage(zeros, str(tmp_path / "z.nii"))
    with pytest.raises(VolumeError, match=r"z.nii: MR is empty: every voxel equals 0.0"):
        read_volume(tmp_path / "z.nii", "MR")
    with pytest.raises(VolumeError, match=r"z.nii: mask is empty"):
        read_volume(tmp_path / "z.nii", "mask")


def test_wrong_extension(tmp_path: Path) -> None:
    (tmp_path / "ct.dcm").write_bytes(b"x")
    with pytest.raises(VolumeError, match="not NIfTI"):
        read_volume(tmp_path / "ct.dcm", "CT")


def test_header_gives_geometry_without_voxels_and_names_a_bad_file(tmp_path: Path) -> None:
    img = _vol()
    img.SetOrigin((1.0, -2.0, 3.0))
    write_volume(img, tmp_path / "a.nii.gz")
    header = read_header(tmp_path / "a.nii.gz", "CT")
    assert header.GetSize() == img.GetSize()
    assert header.GetSpacing() == pytest.approx(img.GetSpacing())
    assert header.GetOrigin() == pytest.approx(img.GetOrigin(), abs=1e-4)
    (tmp_path / "bad.nii.gz").write_bytes(b"not an image")
    with pytest.raises(VolumeError, match=r"bad\.nii\.gz.*CT header cannot be read"):
        read_header(tmp_path / "bad.nii.gz", "CT")
