"""The Laplace family's hooks (:class:`fedaudit.catalog.NoiseFamily`): paper 003 §V's gradient
perturbation, i.i.d. zero-mean Laplace noise of scale b on every coordinate of the update a
client sends. No clipping, so no ε (the family sets no budget hook)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedaudit.defenses.update_noise import level


def perturb(arrays: Sequence[np.ndarray], entry: Mapping[str, Any],
            rng: np.random.Generator) -> list[np.ndarray]:
    """``Δ + Lap(0, b)`` per coordinate, ``b = entry["scale"]`` (E|noise| = b, Var = 2b²)."""
    b = level(entry, "scale")
    return [(np.asarray(a, np.float64) + rng.laplace(0.0, b, np.shape(a))).astype(np.float32)
            for a in arrays]


def update_std(entry: Mapping[str, Any]) -> float:
    """Per-coordinate std of the noise on the update: √2·b (Var = 2b²)."""
    return float(np.sqrt(2.0)) * float(entry["scale"])
