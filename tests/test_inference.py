"""Slice-wise sCT inference (paper 000 / FedSynthCT-Brain) with networks known in closed form.

Volumes are deliberately non-cubic so that any mix-up of the axial (z), coronal (y) and sagittal
(x) axes changes the shape or the values. References are built with explicit per-slice loops in
numpy, independent of the batching, slice skipping and torch code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedaudit.evaluation.inference import predict_volume
from fedaudit.intensity import AIR_HU, unit_to_hu

SHAPE = (9, 7, 8)  # (z, y, x)
W, B = 0.6, 0.1
KERNEL = np.array([0.2, 0.5, 0.3])  # 3x1 kernel along the slice's first (row) axis
ATOL_HU = 2e-3  # float32 HU near 2000 has a 2.4e-4 ulp; batching reorders sums by ~1 ulp


def _volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mr = rng.random(SHAPE).astype(np.float32)
    mask = np.zeros(SHAPE, np.uint8)
    mask[2:7, 1:6, 2:7] = 1
    mask[4, 0, 0] = 1  # an isolated voxel at the edge of its row/column
    mr[mask == 0] = 0.0
    return mr, mask


def _pointwise() -> torch.nn.Module:
    conv = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(W)
        conv.bias.fill_(B)
    return conv


def _rows() -> torch.nn.Module:
    """Output depends on which axis is the slice's row axis, hence on the slicing orientation."""
    conv = torch.nn.Conv2d(1, 1, (3, 1), padding=(1, 0), bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(KERNEL, dtype=torch.float32).view(1, 1, 3, 1))
    return conv


def _rows_reference_slice(s: np.ndarray) -> np.ndarray:
    s = s.astype(np.float64)
    out = np.zeros_like(s)
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            for t, wt in enumerate(KERNEL):  # cross-correlation, zero padding, as torch Conv2d
                ii = i + t - 1
                if 0 <= ii < s.shape[0]:
                    out[i, j] += wt * s[ii, j]
    return out


def _orientation_volume(mr: np.ndarray, axis: int) -> np.ndarray:
    vol = np.empty(mr.shape, np.float64)
    for k in range(mr.shape[axis]):
        if axis == 0:
            vol[k] = _rows_reference_slice(mr[k])
        elif axis == 1:
            vol[:, k, :] = _rows_reference_slice(mr[:, k, :])
        else:
            vol[:, :, k] = _rows_reference_slice(mr[:, :, k])
    return unit_to_hu(vol)


@pytest.mark.parametrize("fusion", ["axial", "median3"])
def test_pointwise_model_closed_form(fusion: str) -> None:
    mr, mask = _volume()
    sct = predict_volume(_pointwise(), mr, mask, fusion=fusion, batch_size=4)
    assert sct.shape == SHAPE and sct.dtype == np.float32
    inside = mask > 0
    np.testing.assert_allclose(sct[inside], unit_to_hu(W * mr + B)[inside], atol=ATOL_HU)
    assert np.all(sct[~inside] == AIR_HU)


def test_median3_is_voxelwise_median_of_three_orientations() -> None:
    mr, mask = _volume(1)
    inside = mask > 0
    axial_ref = _orientation_volume(mr, 0)
    median_ref = np.median(np.stack([_orientation_volume(mr, a) for a in range(3)]), axis=0)
    axial = predict_volume(_rows(), mr, mask, fusion="axial", batch_size=3)
    median3 = predict_volume(_rows(), mr, mask, fusion="median3", batch_size=3)
    np.testing.assert_allclose(axial[inside], axial_ref[inside], atol=ATOL_HU)
    np.testing.assert_allclose(median3[inside], median_ref[inside], atol=ATOL_HU)
    assert np.all(median3[~inside] == AIR_HU)
    # the orientations genuinely disagree, so the fusion is doing something
    assert np.abs(median3 - axial)[inside].max() > 50.0


@pytest.mark.parametrize("fusion", ["axial", "median3"])
def test_batch_size_does_not_change_result(fusion: str) -> None:
    mr, mask = _volume(2)
    ref = predict_volume(_rows(), mr, mask, fusion=fusion, batch_size=1)
    for bs in (2, 3, 5, 64):  # none divides the 5-7 slices that hold mask voxels
        np.testing.assert_allclose(
            predict_volume(_rows(), mr, mask, fusion=fusion, batch_size=bs), ref, atol=ATOL_HU
        )


def test_batchnorm_model_in_train_mode_uses_running_statistics() -> None:
    mr, mask = _volume(3)
    bn = torch.nn.BatchNorm2d(1)
    with torch.no_grad():
        bn.running_mean.fill_(0.3)
        bn.running_var.fill_(0.04)
        bn.weight.fill_(0.5)
        bn.bias.fill_(0.2)
    model = torch.nn.Sequential(_pointwise(), bn)
    model.train()
    one = predict_volume(model, mr, mask, batch_size=1)
    assert not model.training and not bn.training  # left in eval mode
    many = predict_volume(model, mr, mask, batch_size=7)
    np.testing.assert_allclose(one, many, atol=ATOL_HU)
    unit = (W * mr + B - 0.3) / np.sqrt(0.04 + bn.eps) * 0.5 + 0.2
    inside = mask > 0
    np.testing.assert_allclose(one[inside], unit_to_hu(unit)[inside], atol=ATOL_HU)
    assert float(bn.running_mean) == pytest.approx(0.3)  # inference never updates BN buffers


class _Recorder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.batch_shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_shapes.append(tuple(x.shape))
        return x


def test_only_slices_with_mask_voxels_are_inferred() -> None:
    mr, mask = _volume(4)
    rec = _Recorder()
    predict_volume(rec, mr, mask, fusion="median3", batch_size=4)
    seen = [s[0] for s in rec.batch_shapes]
    expected = [int(mask.any(axis=tuple(a for a in range(3) if a != ax)).sum()) for ax in range(3)]
    assert sum(seen) == sum(expected)
    assert all(len(s) == 4 and s[1] == 1 for s in rec.batch_shapes)
    assert {s[2:] for s in rec.batch_shapes} == {SHAPE[1:], (SHAPE[0], SHAPE[2]), SHAPE[:2]}
    # a mask-free volume needs no network call at all
    rec.batch_shapes.clear()
    sct = predict_volume(rec, mr, np.zeros_like(mask))
    assert rec.batch_shapes == [] and np.all(sct == AIR_HU)


def test_bool_and_uint8_masks_agree_and_bad_arguments_raise() -> None:
    mr, mask = _volume(5)
    np.testing.assert_array_equal(
        predict_volume(_pointwise(), mr, mask), predict_volume(_pointwise(), mr, mask.astype(bool))
    )
    with pytest.raises(ValueError, match="fusion"):
        predict_volume(_pointwise(), mr, mask, fusion="mean3")
    with pytest.raises(ValueError, match="shape"):
        predict_volume(_pointwise(), mr, mask[:-1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", [False, True])
def test_cuda_matches_cpu(amp: bool) -> None:
    mr, mask = _volume(6)
    cpu = predict_volume(_rows(), mr, mask, fusion="median3")
    gpu = predict_volume(_rows(), mr, mask, fusion="median3", device="cuda", amp=amp)
    # bfloat16 keeps 8 significand bits: ~2^-8 of the unit range (4024 HU) -> ~16 HU
    np.testing.assert_allclose(gpu, cpu, atol=20.0 if amp else 0.05)
