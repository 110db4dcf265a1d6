"""MR intensity normalisation to [0, 1] (paper 000, "Materials and Methods / Datasets":
"N4 bias correction and normalization to [0,1] were applied to MRI volumes"; FedSynthCT-Brain
[12] uses min-max scaling)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

METHODS = ("minmax", "robust")


def normalize_mr(mr: sitk.Image, mask: sitk.Image, *, method: str = "minmax",
                 percentiles: tuple[float, float] = (0.5, 99.5)) -> sitk.Image:
    """Scale the MR to [0, 1] using statistics inside ``mask`` only; outside is exactly 0.

    Source: paper 000 "Datasets" (normalisation to [0,1]). ``method="minmax"``: the mask's
    minimum maps to 0 and maximum to 1, as in the paper. ``method="robust"``: clip to the
    ``percentiles`` inside the mask first (Nyul & Udupa 1999 style landmarks), so one hot voxel
    (flow artefact, vessel) cannot compress the whole brain into a few grey levels.
    """
    if method not in METHODS:
        raise ValueError(f"unknown normalisation method {method!r}; allowed: {', '.join(METHODS)}")
    if mask.GetSize() != mr.GetSize():
        raise ValueError(f"mask size {mask.GetSize()} differs from MR size {mr.GetSize()}")
    arr = sitk.GetArrayFromImage(mr).astype(np.float64)
    m = sitk.GetArrayViewFromImage(mask) > 0
    if not m.any():
        raise ValueError("mask is empty; cannot normalise the MR")
    vals = arr[m]
    if method == "minmax":
        lo, hi = float(vals.min()), float(vals.max())
    else:
        p_lo, p_hi = percentiles
        if not 0.0 <= p_lo < p_hi <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        lo, hi = (float(v) for v in np.percentile(vals, [p_lo, p_hi]))
    if not hi > lo:
        raise ValueError(f"MR is constant inside the mask ({lo}); cannot normalise")
    out = np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    out[~m] = 0.0
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(mr)
    return img
