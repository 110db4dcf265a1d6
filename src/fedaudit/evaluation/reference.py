"""The trivial reference every sCT number is read against: the constant predictor.

A synthesis model is only worth auditing once it beats predicting one value everywhere in the
head. The constant is the median in-mask HU of the training patients (pooled over all training
centers; the median minimises the mean absolute error over those voxels, Hastie, Tibshirani &
Friedman, "The Elements of Statistical Learning", 2nd ed., §2.4, Eq. 2.18-2.19, so it is the best
constant for the MAE the study reports). Its sCT is that value inside the head mask and
``AIR_HU`` outside, exactly as the model's sCT is masked (:mod:`fedaudit.evaluation.inference`),
and it is scored with the same SynthRAD2023 metrics on the same test patients.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from fedaudit.data.slices import Volume
from fedaudit.intensity import AIR_HU, hu_to_unit


def constant_hu(volumes: Iterable[Volume]) -> float:
    """Median HU over the head-mask voxels of ``volumes``, pooled (float32 values, exact median).

    Raises ValueError when no volume has a mask voxel.
    """
    values = [v.ct[v.mask] for v in volumes]
    pooled = np.concatenate(values) if values else np.empty(0, np.float32)
    if pooled.size == 0:
        raise ValueError("the constant predictor needs at least one head-mask voxel in the "
                         "training patients")
    return float(np.median(pooled))


def constant_sct(mask: np.ndarray, value_hu: float) -> np.ndarray:
    """The constant predictor's sCT: ``value_hu`` inside ``mask``, ``AIR_HU`` outside."""
    return np.where(np.asarray(mask) > 0, np.float32(value_hu), np.float32(AIR_HU)).astype(
        np.float32)


class ConstantModel(nn.Module):
    """A "network" that predicts ``value_hu`` (in the unit intensity the UNet outputs) for every
    pixel: the constant predictor in the per-round validation of
    :func:`fedaudit.federation.local.validate`, so both are scored by the same code."""

    def __init__(self, value_hu: float) -> None:
        super().__init__()
        self.register_buffer("value", torch.tensor(float(hu_to_unit(np.float32(value_hu)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(x.shape[0], 1, *x.shape[2:]).to(x.dtype)
