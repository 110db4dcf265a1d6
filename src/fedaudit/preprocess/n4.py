"""N4 bias-field correction of the MR (paper 000, "Materials and Methods / Datasets": "N4 bias
correction [36] ... applied to MRI volumes"; [36] = Tustison et al. 2010, "N4ITK: Improved N3
Bias Correction", IEEE TMI 29(6):1310-1320).

The field is estimated on a shrunk image within the head mask (cheap; the field is smooth by
construction) and then evaluated at full resolution and divided out, exactly as N4's B-spline
model allows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from fedaudit.runtime import set_threads

BACKENDS = ("simpleitk", "ants")


@dataclass
class N4Result:
    corrected: sitk.Image
    bias_field: sitk.Image
    field_min: float
    field_max: float
    seconds: float


def n4_correct(image: sitk.Image, mask: sitk.Image, *, backend: str = "simpleitk",
               shrink: int = 4, iterations: tuple[int, ...] = (50, 50, 50, 50),
               tolerance: float = 1e-3, threads: int = 1) -> N4Result:
    """N4 bias-field correction (Tustison et al. 2010, IEEE TMI 29(6)) of ``image`` within
    ``mask``.

    One fitting level per entry of ``iterations``; ``tolerance`` is N4's convergence threshold
    (1e-3 at shrink 4 with a head mask: ~7 s at 256^3 and as good as ANTs' 1e-7 default, see
    DESIGN.md "Preprocessing at 256^3"). Returns the corrected image (float32), the
    multiplicative field exp(log field) at full resolution (corrected = image / field), and the
    field's range inside the mask. Voxels <= 0 are excluded from the fit (N4 works on log
    intensities). ``backend``: "simpleitk" (N4BiasFieldCorrectionImageFilter) or "ants"
    (``ants.n4_bias_field_correction``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown N4 backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if shrink < 1:
        raise ValueError(f"shrink must be >= 1, got {shrink}")
    set_threads(threads)
    t0 = time.perf_counter()
    img = sitk.Cast(image, sitk.sitkFloat32)
    m = sitk.Cast(mask > 0, sitk.sitkUInt8)
    if m.GetSize() != img.GetSize():
        raise ValueError(f"mask size {m.GetSize()} differs from image size {img.GetSize()}")
    m.CopyInformation(img)
    fit_mask = sitk.And(m, sitk.Cast(img > 0, sitk.sitkUInt8))
    if int(sitk.GetArrayViewFromImage(fit_mask).sum()) < 100:
        raise ValueError("fewer than 100 positive MR voxels inside the mask; cannot fit N4")

    if backend == "simpleitk":
        field = _field_sitk(img, fit_mask, shrink, iterations, tolerance)
    else:
        field = _field_ants(img, fit_mask, shrink, iterations, tolerance)

    corrected = sitk.Divide(img, field)
    inside = sitk.GetArrayViewFromImage(field)[sitk.GetArrayViewFromImage(m) > 0]
    return N4Result(corrected=sitk.Cast(corrected, sitk.sitkFloat32), bias_field=field,
                    field_min=float(inside.min()), field_max=float(inside.max()),
                    seconds=time.perf_counter() - t0)


def _field_sitk(img: sitk.Image, mask: sitk.Image, shrink: int,
                iterations: tuple[int, ...], tolerance: float) -> sitk.Image:
    small = sitk.Shrink(img, [shrink] * 3) if shrink > 1 else img
    small_mask = sitk.Shrink(mask, [shrink] * 3) if shrink > 1 else mask
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(i) for i in iterations])
    n4.SetConvergenceThreshold(float(tolerance))
    n4.Execute(small, small_mask)
    # The B-spline log field is defined in physical space, so it can be evaluated on the full
    # grid; dividing by it keeps full-resolution detail that a shrunk correction would lose.
    log_field = n4.GetLogBiasFieldAsImage(img)
    return sitk.Cast(sitk.Exp(log_field), sitk.sitkFloat32)


def _field_ants(img: sitk.Image, mask: sitk.Image, shrink: int,
                iterations: tuple[int, ...], tolerance: float) -> sitk.Image:
    # ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS was set by set_threads() before this import.
    import ants

    # A uint8 mask segfaults ANTsPy 0.6.1's N4 on 256^3 images (fine on small ones): pass float.
    field = ants.n4_bias_field_correction(
        ants.from_sitk(img), mask=ants.from_sitk(sitk.Cast(mask, sitk.sitkFloat32)),
        shrink_factor=int(shrink),
        convergence={"iters": [int(i) for i in iterations], "tol": float(tolerance)},
        return_bias_field=True)
    out = sitk.Cast(ants.to_sitk(field), sitk.sitkFloat32)
    if out.GetSize() != img.GetSize():
        raise RuntimeError(f"ANTs N4 returned a field of size {out.GetSize()}, expected "
                           f"{img.GetSize()}")
    out.CopyInformation(img)
    arr = sitk.GetArrayViewFromImage(out)
    if not np.isfinite(arr).all() or float(arr.min()) <= 0:
        raise RuntimeError("ANTs N4 returned a non-positive or non-finite bias field")
    return out
