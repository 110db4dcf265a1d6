"""Reading and writing volumes and small records; every error names the file.

Volumes travel through the library as ``SimpleITK.Image`` so that geometry (origin, spacing,
direction) is never separated from the voxels. NIfTI ``scl_slope``/``scl_inter`` are applied by
SimpleITK's reader, so CT values arrive in HU.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fedaudit.atomic import WriteError, atomic_path, write_text

if TYPE_CHECKING:  # SimpleITK is imported where a volume is read or written, so the records'
    # functions (and the training path, fedaudit.data.slices) import without it
    import SimpleITK as sitk

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd")
# The key that marks a preprocessing output written for a patient who failed a step
# (fedaudit.preprocess.quarantine): a JSON text in place of the volume or record.
QUARANTINE_KEY = "fedaudit_quarantine"


class VolumeError(ValueError):
    """A volume that cannot be used; the message starts with the offending file."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def quarantine_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The quarantine record at ``path``, or None for any other file (a volume, a record, a
    missing file). Only a file that starts with ``{`` is parsed, so a volume costs one read."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            if fh.read(1) != b"{":
                return None
            record = json.loads(b"{" + fh.read())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and QUARANTINE_KEY in record else None


def write_quarantine(paths: Iterable[str | os.PathLike[str]], *, center: str, patient: str,
                     step: str, error: str) -> dict[str, Any]:
    """Write the record of ``center/patient``'s failure at ``step`` to every path in ``paths``
    (atomic; :mod:`fedaudit.preprocess.quarantine` says when); returns it."""
    record = {QUARANTINE_KEY: 1, "center": center, "patient": patient, "step": step,
              "error": error}
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    for path in paths:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_text(text, path)
    return record


def _refuse_quarantined(p: Path, role: str) -> None:
    record = quarantine_record(p)
    if record is not None:
        raise VolumeError(p, f"{role} of {record['center']}/{record['patient']} was never made: "
                             f"the patient failed preprocessing at step {record['step']} "
                             f"({record['error']}); preprocess.on_error: exclude leaves it "
                             "out, and this reader should have skipped it")


def is_volume_path(path: str | os.PathLike[str]) -> bool:
    name = str(path).lower()
    return name.endswith(VOLUME_SUFFIXES)


def find_volume(folder: str | os.PathLike[str], stem: str) -> Path | None:
    """``folder/stem.<ext>`` for the first readable-volume suffix that exists, else None."""
    for ext in VOLUME_SUFFIXES:
        candidate = Path(folder) / f"{stem}{ext}"
        if candidate.exists():
            return candidate
    return None


def read_volume(path: str | os.PathLike[str], role: str = "volume") -> sitk.Image:
    """Read a 3-D scalar volume and reject what cannot be a medical image.

    ``role`` ("MR", "CT", "mask") only shapes the message. Rejected: missing or unreadable
    files (truncated gzip included), non-3-D or multi-component images, empty images, NaN or
    infinite voxels, and images whose voxels are all the same value.
    """
    p = Path(path)
    if not p.exists():
        raise VolumeError(p, f"{role} file does not exist")
    if not is_volume_path(p):
        raise VolumeError(p, f"{role} file is not NIfTI (.nii, .nii.gz) or MetaImage (.mha, .mhd)")
    _refuse_quarantined(p, role)
    if p.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_voxels(p, role)
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reader error"
        raise VolumeError(p, f"{role} file cannot be read (corrupt or truncated?): "
                             f"{first}") from exc
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeError(p, f"{role} has {img.GetNumberOfComponentsPerPixel()} components per "
                             "voxel; a scalar volume is required")
    if img.GetDimension() != 3:
        raise VolumeError(p, f"{role} is {img.GetDimension()}-D; a 3-D volume is required")
    size = img.GetSize()
    if min(size) < 2:
        raise VolumeError(p, f"{role} has size {size}; every axis needs at least 2 voxels")
    arr = sitk.GetArrayViewFromImage(img)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise VolumeError(p, f"{role} contains {bad} NaN or infinite voxels")
    if role.lower() != "mask" and float(arr.max()) == float(arr.min()):
        raise VolumeError(p, f"{role} is empty: every voxel equals {float(arr.min())}")
    if role.lower() == "mask" and not (arr > 0).any():
        raise VolumeError(p, "mask is empty: no voxel is inside")
    return img


def read_header(path: str | os.PathLike[str], role: str = "volume") -> sitk.ImageFileReader:
    """A reader holding ``path``'s size and geometry, without reading the voxels."""
    import SimpleITK as sitk

    _refuse_quarantined(Path(path), role)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise VolumeError(Path(path), f"{role} header cannot be read: "
                                      f"{str(exc).strip().splitlines()[-1]}") from exc
    return reader


def _check_nifti_voxels(p: Path, role: str) -> None:
    """Read the NIfTI voxels with nibabel: ITK's reader silently pads a truncated gzip stream and
    turns NaN into 0, so neither problem would be visible in the SimpleITK image."""
    import nibabel as nib

    try:
        data = np.asanyarray(nib.load(str(p)).dataobj)
    except Exception as exc:  # nibabel raises many types (EOFError, zlib.error, ImageFileError)
        raise VolumeError(p, f"{role} file cannot be read (corrupt or truncated?): "
                             f"{type(exc).__name__}: {exc}") from exc
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise VolumeError(p, f"{role} contains {bad} NaN or infinite voxels")


def write_volume(img: sitk.Image, path: str | os.PathLike[str]) -> None:
    """Write atomically and verified (:mod:`fedaudit.atomic`): a killed job or a full disk never
    leaves a half-written output behind, and the error names the path."""
    import SimpleITK as sitk

    def verify(tmp: Path) -> None:
        _verify_volume(tmp, img)

    with atomic_path(path, verify) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)


def _verify_volume(tmp: Path, img: sitk.Image) -> None:
    """The written file's header has the image's size, and a gzip stream its full length.

    SimpleITK does not raise when the disk is full (it prints "wrote only 0 of N bytes"), and a
    truncated gzip still has a readable header, so the header alone proves little: the gzip
    trailer's ISIZE (the uncompressed length mod 2³²) must equal NIfTI's voxel offset plus the
    voxel bytes, which a cut stream's last four bytes match only by chance."""
    if tmp.stat().st_size == 0:
        raise WriteError(tmp, "the writer left an empty file")
    reader = read_header(tmp)
    if reader.GetSize() != img.GetSize():
        raise WriteError(tmp, f"header says size {reader.GetSize()}, wrote {img.GetSize()}")
    if tmp.name.lower().endswith(".nii.gz"):
        import nibabel as nib

        try:
            proxy = nib.load(str(tmp)).dataobj  # the header as stored: its data offset
            expected = int(proxy.offset) + int(np.prod(proxy.shape)) * proxy.dtype.itemsize
        except Exception as err:  # nibabel raises many types
            raise WriteError(tmp, f"unreadable NIfTI header: {err}") from err
        with open(tmp, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            isize = int.from_bytes(fh.read(4), "little")
        if isize != expected % 2**32:
            raise WriteError(tmp, f"the gzip stream is incomplete ({isize} of {expected} bytes)")


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """A JSON record, atomic and verified (:func:`fedaudit.atomic.write_text`)."""
    write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n", path)


def read_json(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: cannot read JSON record: {exc}") from exc


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
