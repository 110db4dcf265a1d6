"""DP-SGD's one-step form (:class:`fedaudit.catalog.NoiseFamily`'s ``perturb``): the attacks that
invert one slice's gradient see one DP-SGD step whose lot is that slice (Abadi et al. 2016,
Alg. 1: per-sample clip to C, N(0, (σC)²) on the sum, divided by the expected lot size 1). A
whole round of DP-SGD is no update transform: the clients run it (:mod:`.private`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedaudit.defenses.update_noise import clip_and_noise


def perturb(arrays: Sequence[np.ndarray], entry: Mapping[str, Any],
            rng: np.random.Generator) -> list[np.ndarray]:
    """``clip(g, C) + N(0, (σC)² I)``, ``C = entry["max_grad_norm"]``,
    ``σ = entry["noise_multiplier"]``; ``arrays`` is one sample's gradient."""
    return clip_and_noise(arrays, entry, "max_grad_norm", rng)


def reference(settings: Mapping[str, Any]) -> tuple[str, tuple[dict[str, Any], ...]]:
    """The scenario DP-SGD's levels are compared with: the GroupNorm UNet without DP
    (``groupnorm``, :mod:`fedaudit.defenses.group_norm`), with DP-SGD's ``groups``, so the
    table separates the noise's cost from the architecture's."""
    return "groupnorm", ({"name": "group_norm", "groups": int(settings["groups"])},)


def model(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The model DP-SGD trains (``DefenseSpec.model``): the GroupNorm UNet with ``groups``
    (Opacus has no per-sample gradient under BatchNorm's batch statistics); the same entry as
    its reference scenario's, so the two train one architecture."""
    return {"norm": "group", "groups": int(settings["groups"])}
