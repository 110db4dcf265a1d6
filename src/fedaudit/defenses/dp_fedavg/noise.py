"""DP-FedAvg's noise hooks (:class:`fedaudit.catalog.NoiseFamily`): McMahan et al. 2018, Alg. 1,
``ClipFn`` then the Gaussian mechanism, performed by each client on its own update."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedaudit.defenses.update_noise import clip_and_noise


def perturb(arrays: Sequence[np.ndarray], entry: Mapping[str, Any],
            rng: np.random.Generator) -> list[np.ndarray]:
    """``Δ · min(1, C/‖Δ‖₂) + N(0, (z·C)² I)``, ``C = entry["clip"]``,
    ``z = entry["noise_multiplier"]``; ``‖Δ‖₂`` over every array together."""
    return clip_and_noise(arrays, entry, "clip", rng)


def update_std(entry: Mapping[str, Any]) -> float:
    """Per-coordinate std of the noise on the update: z·C."""
    return float(entry["noise_multiplier"]) * float(entry["clip"])
