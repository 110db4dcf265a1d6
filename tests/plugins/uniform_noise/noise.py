"""The toy family's transform: ``Δ + U(−a, a)`` per coordinate (std a/√3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def perturb(arrays: Sequence[np.ndarray], entry: Mapping[str, Any],
            rng: np.random.Generator) -> list[np.ndarray]:
    a = float(entry["half_width"])
    return [(np.asarray(x, np.float64) + rng.uniform(-a, a, np.shape(x))).astype(np.float32)
            for x in arrays]


def update_std(entry: Mapping[str, Any]) -> float:
    return float(entry["half_width"]) / float(np.sqrt(3.0))
