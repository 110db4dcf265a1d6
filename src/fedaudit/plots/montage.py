"""Per-center montage of raw inputs: one row per patient, MR | CT (two windows) | mask.

Every volume is reoriented to LPS before slicing, so rows from centers with sagittal, coronal or
RAS-stored acquisitions look alike: axial slices in radiological convention (anterior up, patient
left on the image right), taken through the middle of each volume's own field of view.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fedaudit.io import VolumeError, find_volume, read_volume
from fedaudit.plots.style import apply_style, hu_limits, save

MAX_ROWS = 4


def _axial_mid(img: sitk.Image) -> tuple[np.ndarray, float]:
    """Middle axial slice (rows A->P, columns R->L in patient terms) and its pixel aspect."""
    lps = sitk.DICOMOrient(img, "LPS")
    # A copy, not a view: the reoriented image is freed when this function returns.
    arr = sitk.GetArrayFromImage(lps)
    sx, sy, _ = lps.GetSpacing()
    return np.asarray(arr[arr.shape[0] // 2], dtype=np.float32), sy / sx


def _try_mid(path: Path | None, role: str) -> tuple[tuple[np.ndarray, float] | None, str]:
    """Mid-slice or the reason there is none: one bad file must not hide a center's montage."""
    if path is None:
        return None, f"{role} missing"
    try:
        return _axial_mid(read_volume(path, role)), ""
    except VolumeError as exc:
        return None, f"{role} unreadable:\n{exc.problem[:40]}"


PatientFiles = tuple[str, Path | None, Path | None, Path | None]  # name, MR, CT, mask


def folder_files(folder: Path) -> PatientFiles:
    """The files of a patient folder in the SynthRAD2023 layout (absent ones are None)."""
    folder = Path(folder)
    return (folder.name, find_volume(folder, "mr"), find_volume(folder, "ct"),
            find_volume(folder, "mask"))


def center_montage(patients: list[PatientFiles], out_png: Path, title: str,
                   max_rows: int = MAX_ROWS) -> None:
    """Write a PNG with, per patient (up to ``max_rows``), the mid-axial MR (1st-99th percentile
    window), CT in the brain window (W80/L40) and a wide window (W2000/L0, shows skull and couch),
    and the shipped head mask, or a note that the mask is computed later from the CT."""
    import matplotlib.pyplot as plt

    apply_style()
    rows = list(patients)[:max_rows]
    if not rows:
        raise ValueError(f"{out_png}: no patients given for the montage")
    ncol = 4
    # constrained layout: the two-line suptitle and the two-line column headers get rows of
    # their own (a one-patient center left them no room)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(2.4 * ncol, 2.5 * len(rows) + 0.8),
                             squeeze=False, layout="constrained")
    headers = ["MR (T1w)", "CT brain window\nW80 L40 HU", "CT wide window\nW2000 L0 HU",
               "head mask"]
    for r, (name, mr_path, ct_path, mask_path) in enumerate(rows):
        row = axes[r]
        mr_mid, why_mr = _try_mid(mr_path, "MR")
        ct_mid, why_ct = _try_mid(ct_path, "CT")
        mask_mid, why_mask = _try_mid(mask_path, "mask")
        if mr_mid is not None:
            mr, aspect = mr_mid
            lo, hi = np.percentile(mr, [1, 99]) if mr.any() else (0.0, 1.0)
            row[0].imshow(mr, cmap="gray", vmin=lo, vmax=max(hi, lo + 1e-6), aspect=aspect,
                          origin="upper")
        else:
            row[0].text(0.5, 0.5, why_mr, ha="center", va="center",
                        transform=row[0].transAxes)
        if ct_mid is not None:
            ct, aspect = ct_mid
            for c, window in ((1, "brain"), (2, "wide")):
                vmin, vmax = hu_limits(window)
                row[c].imshow(ct, cmap="gray", vmin=vmin, vmax=vmax, aspect=aspect,
                              origin="upper")
        else:
            for c in (1, 2):
                row[c].text(0.5, 0.5, why_ct, ha="center", va="center",
                            transform=row[c].transAxes)
        if mask_mid is not None:
            mask, aspect = mask_mid
            row[3].imshow(mask > 0, cmap="gray", vmin=0, vmax=1, aspect=aspect, origin="upper")
        else:
            note = why_mask if mask_path else "no mask shipped:\ncomputed later\nfrom the CT"
            row[3].text(0.5, 0.5, note, ha="center",
                        va="center", transform=row[3].transAxes)
        row[0].set_ylabel(name, fontsize=10)
        for c, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(headers[c])
    fig.suptitle(f"{title}\naxial mid-slices, radiological view (anterior up, patient left "
                 "on the right)", fontsize=10)
    save(fig, str(out_png))
