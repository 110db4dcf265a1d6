"""Per-center montage of raw inputs: one row per patient, MR | CT (two windows) | mask.

Every volume is reoriented to LPS before slicing, so rows from centers with sagittal, coronal or
RAS-stored acquisitions look alike: axial slices in radiological convention (anterior up, patient
left on the image right), taken through the middle of each volume's own field of view.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fedaudit.io import read_volume
from fedaudit.plots.style import apply_style, hu_limits, save

MAX_ROWS = 4


def _axial_mid(img: sitk.Image) -> tuple[np.ndarray, float]:
    """Middle axial slice (rows A->P, columns R->L in patient terms) and its pixel aspect."""
    lps = sitk.DICOMOrient(img, "LPS")
    arr = sitk.GetArrayViewFromImage(lps)
    sx, sy, _ = lps.GetSpacing()
    return np.asarray(arr[arr.shape[0] // 2], dtype=np.float32), sy / sx


def _find(folder: Path, stem: str) -> Path | None:
    for ext in (".nii.gz", ".nii", ".mha", ".mhd"):
        p = folder / f"{stem}{ext}"
        if p.exists():
            return p
    return None


def center_montage(patient_dirs: list[Path], out_png: Path, title: str,
                   max_rows: int = MAX_ROWS) -> None:
    """Write a PNG with, per patient (up to ``max_rows``), the mid-axial MR (1st-99th percentile
    window), CT in the brain window (W80/L40) and a wide window (W2000/L0, shows skull and couch),
    and the shipped head mask, or a note that the mask is computed later from the CT."""
    import matplotlib.pyplot as plt

    apply_style()
    dirs = [Path(d) for d in patient_dirs][:max_rows]
    if not dirs:
        raise ValueError(f"{out_png}: no patient folders given for the montage")
    ncol = 4
    fig, axes = plt.subplots(len(dirs), ncol, figsize=(2.4 * ncol, 2.5 * len(dirs) + 0.5),
                             squeeze=False)
    headers = ["MR (T1w)", "CT brain window\nW80 L40 HU", "CT wide window\nW2000 L0 HU",
               "head mask"]
    for r, folder in enumerate(dirs):
        mr_path, ct_path, mask_path = (_find(folder, s) for s in ("mr", "ct", "mask"))
        row = axes[r]
        if mr_path is not None:
            mr, aspect = _axial_mid(read_volume(mr_path, "MR"))
            lo, hi = np.percentile(mr, [1, 99]) if mr.any() else (0.0, 1.0)
            row[0].imshow(mr, cmap="gray", vmin=lo, vmax=max(hi, lo + 1e-6), aspect=aspect,
                          origin="upper")
        else:
            row[0].text(0.5, 0.5, "MR missing", ha="center", va="center",
                        transform=row[0].transAxes)
        if ct_path is not None:
            ct, aspect = _axial_mid(read_volume(ct_path, "CT"))
            for c, window in ((1, "brain"), (2, "wide")):
                vmin, vmax = hu_limits(window)
                row[c].imshow(ct, cmap="gray", vmin=vmin, vmax=vmax, aspect=aspect,
                              origin="upper")
        else:
            for c in (1, 2):
                row[c].text(0.5, 0.5, "CT missing", ha="center", va="center",
                            transform=row[c].transAxes)
        if mask_path is not None:
            mask, aspect = _axial_mid(read_volume(mask_path, "mask"))
            row[3].imshow(mask > 0, cmap="gray", vmin=0, vmax=1, aspect=aspect, origin="upper")
        else:
            row[3].text(0.5, 0.5, "no mask shipped:\ncomputed later\nfrom the CT", ha="center",
                        va="center", transform=row[3].transAxes)
        row[0].set_ylabel(folder.name, fontsize=10)
        for c, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(headers[c])
    fig.suptitle(f"{title}\naxial mid-slices, radiological view (anterior up, patient left "
                 "on the right)", fontsize=10)
    save(fig, str(out_png))
