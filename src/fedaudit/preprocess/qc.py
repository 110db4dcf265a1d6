"""Quality control of the preprocessed cube: summary numbers per patient.

Not in paper 000; the audit adds it so a failed registration or a bad mask is visible before
training (paper 000, "Datasets", describes the preprocessing being checked here). The per-patient
figure is drawn by :mod:`fedaudit.plots.qc` (plots depend on the library, not the reverse).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def volume_stats(img: sitk.Image, mask: sitk.Image) -> dict:
    """Shape (numpy z, y, x), size (ITK x, y, z), spacing (mm), min/max/mean inside the mask and
    mask volume (ml): the numbers a reviewer checks against paper 000 "Datasets" (256^3, CT in
    HU with -1000 outside, MR in [0,1] with 0 outside)."""
    arr = sitk.GetArrayViewFromImage(img)
    m = sitk.GetArrayViewFromImage(mask) > 0
    if arr.shape != m.shape:
        raise ValueError(f"mask shape {m.shape} differs from image shape {arr.shape}")
    inside = arr[m]
    ml = float(np.prod(img.GetSpacing())) / 1000.0
    return {
        "shape": list(arr.shape),
        "size": list(img.GetSize()),
        "spacing": [float(s) for s in img.GetSpacing()],
        "min": float(inside.min()) if inside.size else None,
        "max": float(inside.max()) if inside.size else None,
        "mean": float(inside.mean()) if inside.size else None,
        "mask_volume_ml": float(m.sum() * ml),
    }
