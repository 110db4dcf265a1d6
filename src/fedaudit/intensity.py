"""Intensity conventions shared by training, inference and evaluation.

CT targets are HU clipped to the SynthRAD2023 range [-1024, 3000] (Thummerer et al. 2023, the
challenge's evaluation code; data_range 4024) and mapped linearly to [0, 1] for the network; the
network's output is mapped back with the inverse. MR inputs are already in [0, 1] (preprocessing).
Outside the head mask every CT and sCT voxel is ``AIR_HU`` (-1000, the value preprocessing writes;
paper 000, "Data pre-processing": non-anatomical regions are assigned -1000 HU).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

HU_MIN = -1024.0
HU_MAX = 3000.0
HU_RANGE = HU_MAX - HU_MIN  # 4024, the SynthRAD2023 data_range
# Defined here, not imported from fedaudit.preprocess: the trainers need the value but not
# SimpleITK. fedaudit.preprocess.resample keeps its own copy (the preprocess env has no torch);
# tests/test_resample.py pins the two to each other.
AIR_HU = -1000.0

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def hu_to_unit(hu: Array) -> Array:
    """HU -> [0, 1]: clip to [HU_MIN, HU_MAX], then scale linearly."""
    if isinstance(hu, torch.Tensor):
        return (hu.clamp(HU_MIN, HU_MAX) - HU_MIN) / HU_RANGE
    return ((np.clip(hu, HU_MIN, HU_MAX) - HU_MIN) / HU_RANGE).astype(np.float32)


def unit_to_hu(unit: Array) -> Array:
    """[0, 1] -> HU, the inverse of :func:`hu_to_unit` on [HU_MIN, HU_MAX] (no clipping)."""
    if isinstance(unit, torch.Tensor):
        return unit * HU_RANGE + HU_MIN
    return (np.asarray(unit, np.float32) * np.float32(HU_RANGE) + np.float32(HU_MIN)).astype(
        np.float32
    )
