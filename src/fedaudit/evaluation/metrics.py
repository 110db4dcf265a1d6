"""SynthRAD2023 image-similarity metrics between a ground-truth CT and a synthetic CT.

Source: paper 000, "Evaluation Metrics", Eq. 3 (MAE), Eq. 4-5 (PSNR, MSE), Eq. 6 (SSIM), which
follows the SynthRAD2023 challenge (Thummerer et al., Med. Phys. 2023, and the challenge's
evaluation code, ``ImageMetrics`` in SynthRAD2023/metrics). The challenge fixes the HU range to
[-1024, 3000] (data_range 4024 = ``fedaudit.intensity.HU_RANGE``) and evaluates inside the
patient mask only; the paper's "N" (number of voxels) is the number of mask voxels.

All three metrics are computed in float64 whatever the input dtype. The challenge code casts the
volumes to float32 first; on a 160^3 head phantom that changes the mean SSIM by ~5e-9 (measured),
far below any reported precision, so the two agree for every practical purpose.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

from fedaudit.intensity import HU_MAX, HU_MIN, HU_RANGE

SSIM_WIN = 7  # scikit-image's default uniform window, used by the challenge code
SSIM_PAD = (SSIM_WIN - 1) // 2  # 3: the window half-width the challenge crops at the borders


def _prepare(gt: np.ndarray, pred: np.ndarray,
             mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    mask = np.asarray(mask)
    if gt.shape != pred.shape or gt.shape != mask.shape:
        raise ValueError(
            f"shape mismatch: gt {gt.shape}, pred {pred.shape}, mask {mask.shape}"
        )
    # Binarised as the challenge code does (mask > 0), so uint8 {0,1}, {0,255} and bool all work.
    m = mask > 0
    if not m.any():
        raise ValueError("mask is empty; image metrics are undefined")
    return gt, pred, m


def mae(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute error in HU over the mask voxels, without clipping.

    Source: paper 000 Eq. 3; SynthRAD2023 ``ImageMetrics.mae``: sum|gt - pred| * m / sum m.
    Only mask voxels are read (indexing, not multiplication), so non-finite values outside the
    mask cannot leak in through ``inf * 0``.
    """
    g, p, m = _prepare(gt, pred, mask)
    return float(np.abs(g[m].astype(np.float64) - p[m].astype(np.float64)).mean())


def psnr(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over the mask voxels, both images clipped to the HU range.

    Source: paper 000 Eq. 4-5; SynthRAD2023 ``ImageMetrics.psnr(use_population_range=True)``:
    clip gt and pred to [-1024, 3000], MSE over the mask voxels, 10 log10(4024^2 / MSE).

    A perfect prediction (MSE == 0 after clipping) returns ``math.inf``, the limit of the formula
    and what scikit-image's ``peak_signal_noise_ratio`` yields; no epsilon is added, because any
    epsilon would be an arbitrary, unit-dependent ceiling.
    """
    g, p, m = _prepare(gt, pred, mask)
    g = np.clip(g[m].astype(np.float64), HU_MIN, HU_MAX)
    p = np.clip(p[m].astype(np.float64), HU_MIN, HU_MAX)
    mse = float(np.mean((g - p) ** 2))
    if mse == 0.0:
        return math.inf
    return float(10.0 * np.log10(HU_RANGE**2 / mse))


def _ssim_box(m: np.ndarray) -> tuple[slice, ...]:
    """Mask bounding box grown by the window half-width, clipped to the volume.

    Every SSIM-map voxel inside the bounding box has its whole 7^3 window inside this box (or
    touches the volume border exactly where the box does, so scikit-image's reflect padding sees
    the same values), so the map restricted to the mask is identical to the full-volume map.
    Outside the box the shifted images are 0 everywhere and contribute nothing we average.
    """
    box = []
    for axis in range(m.ndim):
        other = tuple(a for a in range(m.ndim) if a != axis)
        idx = np.flatnonzero(m.any(axis=other))
        lo = max(int(idx[0]) - SSIM_PAD, 0)
        hi = min(int(idx[-1]) + SSIM_PAD + 1, m.shape[axis])
        if hi - lo < SSIM_WIN:
            # Too thin for one window: fall back to the full extent (skimage needs >= 7 voxels).
            lo, hi = 0, m.shape[axis]
        box.append(slice(lo, hi))
    return tuple(box)


def ssim(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    """Mean structural similarity over the mask, SynthRAD2023 style (3-D, 7^3 uniform window).

    Source: paper 000 Eq. 6 (Wang et al., IEEE TIP 2004) as evaluated by SynthRAD2023
    ``ImageMetrics.ssim``: clip both images to [-1024, 3000]; set voxels outside the mask to
    -1024; shift by +1024 so values are non-negative; scikit-image ``structural_similarity`` in
    3-D with its defaults (uniform 7^3 window, sample covariance, K1 = 0.01, K2 = 0.03) and
    data_range 4024, ``full=True``; then average the SSIM map over the mask voxels after cropping
    ``SSIM_PAD`` = 3 voxels (half the window) from every face of the VOLUME, the map and the mask
    cropped alike -- scikit-image's ``crop(S, pad)`` edge handling applied to both, exactly what
    the challenge code does. I.e. a mask voxel counts iff it is at least 3 voxels from every
    volume face; the crop is at the array borders, not at the mask's bounding box.

    For speed the map is computed on the mask's bounding box grown by 3 voxels (see
    :func:`_ssim_box`); the values at mask voxels are the same as on the full volume.

    Raises ``ValueError`` when no mask voxel survives the 3-voxel border crop (the challenge code
    would return NaN from an empty mean) or when the volume is thinner than 7 voxels.
    """
    g, p, m = _prepare(gt, pred, mask)
    if min(m.shape) < SSIM_WIN:
        raise ValueError(f"volume {m.shape} is thinner than the {SSIM_WIN}-voxel SSIM window")
    inner = tuple(slice(SSIM_PAD, n - SSIM_PAD) for n in m.shape)
    counted = np.zeros_like(m)
    counted[inner] = m[inner]
    if not counted.any():
        raise ValueError(
            f"no mask voxel lies {SSIM_PAD} or more voxels inside the volume border; "
            "SSIM is undefined"
        )
    box = _ssim_box(m)
    mb = m[box]
    # Clip, paint the outside with the range minimum, shift to >= 0: the challenge's order.
    gb = np.where(mb, np.clip(g[box].astype(np.float64), HU_MIN, HU_MAX), HU_MIN) - HU_MIN
    pb = np.where(mb, np.clip(p[box].astype(np.float64), HU_MIN, HU_MAX), HU_MIN) - HU_MIN
    _, smap = structural_similarity(
        gb, pb, win_size=SSIM_WIN, data_range=HU_RANGE, full=True
    )
    return float(smap[counted[box]].mean(dtype=np.float64))


def image_metrics(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """MAE (HU), PSNR (dB) and SSIM of ``pred`` against ``gt`` inside ``mask``.

    Source: paper 000 Eq. 3-6 with the SynthRAD2023 definitions (see :func:`mae`, :func:`psnr`,
    :func:`ssim`). Keys: ``mae``, ``psnr``, ``ssim``.
    """
    return {"mae": mae(gt, pred, mask), "psnr": psnr(gt, pred, mask), "ssim": ssim(gt, pred, mask)}
