"""SynthRAD2023 image metrics (paper 000 Eq. 3-6) against independent references and closed forms.

The SSIM reference is written here from Wang et al. (IEEE TIP 2004, Eq. 13) with scikit-image's
conventions (uniform 7^3 window, sample covariance, K1 = 0.01, K2 = 0.03): every window's moments
are computed two-pass from an explicit window view, not with running-sum filters, and only
windows fully inside the volume are used (the 3-voxel border crop makes padding irrelevant).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from fedaudit.evaluation.metrics import image_metrics, mae, psnr, ssim

LO, HI, R = -1024.0, 3000.0, 4024.0


def _phantom(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ellipsoid head with a bone shell, noisy sCT; -1000 HU outside the mask like real data."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(sum(g**2 for g in grids))
    mask = (r < 0.85).astype(np.uint8)
    gt = np.where(r > 0.7, 1400.0, 40.0) + rng.normal(0, 30, shape)
    pred = gt + rng.normal(0, 80, shape) + 25.0 * grids[0]
    gt[mask == 0] = -1000.0
    pred[mask == 0] = -1000.0
    return gt.astype(np.float32), pred.astype(np.float32), mask


def _ssim_reference(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    m = mask > 0
    x = np.where(m, np.clip(gt.astype(np.float64), LO, HI), LO) - LO
    y = np.where(m, np.clip(pred.astype(np.float64), LO, HI), LO) - LO
    wx = sliding_window_view(x, (7, 7, 7))  # window centred on voxel (i+3, j+3, k+3)
    wy = sliding_window_view(y, (7, 7, 7))
    axes = (-3, -2, -1)
    n = 7**3
    mx = wx.mean(axis=axes)
    my = wy.mean(axis=axes)
    dx = wx - mx[..., None, None, None]
    dy = wy - my[..., None, None, None]
    vx = (dx * dx).sum(axis=axes) / (n - 1)
    vy = (dy * dy).sum(axis=axes) / (n - 1)
    cxy = (dx * dy).sum(axis=axes) / (n - 1)
    c1, c2 = (0.01 * R) ** 2, (0.03 * R) ** 2
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    inner = m[3:-3, 3:-3, 3:-3]
    return float(smap[inner].mean())


def test_mae_and_psnr_match_explicit_loops() -> None:
    rng = np.random.default_rng(1)
    shape = (6, 5, 7)
    gt = rng.uniform(-2000, 4000, shape)  # out of range on both sides: exercises clipping
    pred = gt + rng.normal(0, 300, shape)
    mask = rng.random(shape) < 0.5
    abs_sum = sq_sum = 0.0
    count = 0
    for idx in np.ndindex(shape):
        if mask[idx]:
            abs_sum += abs(gt[idx] - pred[idx])
            g = min(max(gt[idx], LO), HI)
            p = min(max(pred[idx], LO), HI)
            sq_sum += (g - p) ** 2
            count += 1
    assert mae(gt, pred, mask) == pytest.approx(abs_sum / count, rel=1e-12)
    assert psnr(gt, pred, mask) == pytest.approx(10 * math.log10(R**2 / (sq_sum / count)), abs=1e-9)
    # np.ma as a second, vectorised reference for the MSE
    mse_ma = np.ma.masked_array((np.clip(gt, LO, HI) - np.clip(pred, LO, HI)) ** 2, ~mask).mean()
    assert psnr(gt, pred, mask) == pytest.approx(10 * math.log10(R**2 / mse_ma), abs=1e-9)


@pytest.mark.parametrize("shape,seed", [((20, 22, 18), 0), ((16, 16, 16), 3)])
def test_ssim_matches_handwritten_wang2004_reference(shape: tuple[int, int, int],
                                                     seed: int) -> None:
    gt, pred, mask = _phantom(shape, seed)
    got = ssim(gt, pred, mask)
    assert got == pytest.approx(_ssim_reference(gt, pred, mask), abs=1e-6)
    assert 0.0 < got < 0.999  # the noise must be visible, or the comparison proves little


def test_ssim_small_mask_in_large_volume_and_mask_touching_border() -> None:
    """The bounding-box shortcut must not change the value; border voxels (< 3 from a face) are
    dropped, mask voxels there still shape their neighbours' windows."""
    rng = np.random.default_rng(5)
    shape = (24, 20, 22)
    gt = rng.uniform(-500, 1500, shape)
    pred = gt + rng.normal(0, 200, shape)
    mask = np.zeros(shape, bool)
    mask[9:15, 4:10, 11:17] = True  # small blob far from the borders
    assert ssim(gt, pred, mask) == pytest.approx(_ssim_reference(gt, pred, mask), abs=1e-6)
    mask[0:6, :, 15:] = True  # add a slab that touches three faces
    assert ssim(gt, pred, mask) == pytest.approx(_ssim_reference(gt, pred, mask), abs=1e-6)


def test_identical_volumes() -> None:
    gt, _, mask = _phantom((16, 18, 17), 2)
    out = image_metrics(gt, gt.copy(), mask)
    assert set(out) == {"mae", "psnr", "ssim"}
    assert out["mae"] == 0.0
    assert out["psnr"] == math.inf
    assert out["ssim"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("d", [1.0, 17.5, 250.0])
def test_constant_offset_inside_mask(d: float) -> None:
    gt, _, mask = _phantom((16, 16, 16), 4)
    pred = np.where(mask > 0, gt + d, gt)  # the phantom stays inside [-1024, 3000]: no clipping
    assert mae(gt, pred, mask) == pytest.approx(d, rel=1e-6)
    assert psnr(gt, pred, mask) == pytest.approx(20 * math.log10(R / d), abs=1e-4)
    assert ssim(gt, pred, mask) < 1.0


def test_voxels_outside_mask_never_matter() -> None:
    gt, pred, mask = _phantom((18, 16, 20), 6)
    ref = image_metrics(gt, pred, mask)
    out = mask == 0
    rng = np.random.default_rng(7)
    gt2, pred2 = gt.copy(), pred.copy()
    gt2[out] = rng.uniform(-1e6, 1e6, out.sum())
    pred2[out] = rng.uniform(-1e6, 1e6, out.sum())
    gt2[0, 0, 0], pred2[0, 0, 1], pred2[-1, -1, -1] = np.nan, np.inf, -np.inf
    assert image_metrics(gt2, pred2, mask) == ref


def test_clipping_counts_in_mae_not_in_psnr() -> None:
    gt, _, mask = _phantom((16, 16, 16), 8)
    gt = gt.copy()
    inside = np.argwhere(mask > 0)[:10]
    gt[tuple(inside.T)] = 3000.0
    pred = gt.copy()
    pred[tuple(inside.T)] = 5000.0
    n = int((mask > 0).sum())
    assert mae(gt, pred, mask) == pytest.approx(2000.0 * 10 / n, rel=1e-9)
    assert psnr(gt, pred, mask) == math.inf  # both clip to 3000: no error left
    assert ssim(gt, pred, mask) == pytest.approx(1.0, abs=1e-12)


def test_mask_dtypes_are_equivalent() -> None:
    gt, pred, mask = _phantom((16, 16, 16), 9)
    ref = image_metrics(gt, pred, mask)
    assert image_metrics(gt, pred, mask.astype(bool)) == ref
    assert image_metrics(gt, pred, mask * np.uint8(255)) == ref


def test_invalid_inputs_raise() -> None:
    gt, pred, mask = _phantom((16, 16, 16), 10)
    with pytest.raises(ValueError, match="shape"):
        mae(gt, pred[:-1], mask[:-1])
    with pytest.raises(ValueError, match="shape"):
        psnr(gt, pred, mask[:, :-1])
    with pytest.raises(ValueError, match="empty"):
        image_metrics(gt, pred, np.zeros_like(mask))
    border_only = np.zeros_like(mask)
    border_only[:2] = 1  # inside the 3-voxel crop: nothing left for SSIM
    with pytest.raises(ValueError, match="border"):
        ssim(gt, pred, border_only)
