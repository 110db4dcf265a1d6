"""Noise on the update a client sends: the transform the noise defenses apply, numpy only.

Two defenses perturb a client's update Δw_k = w_k − w_global (what our clients send,
:mod:`fedaudit.federation.client`) before it leaves the hospital, so that the honest-but-curious
server -- the attacker of our threat model, who sees every individual update -- only ever holds
the perturbed one:

- ``laplace_noise`` (:mod:`fedaudit.defenses.laplace_noise`): paper 003 (MedPFL) §V, "gradient
  perturbation": i.i.d. zero-mean Laplace noise of scale ``b`` on every coordinate of the shared
  local update (the defense measured against CPL, Wei et al. 2020, "A Framework for Evaluating
  Gradient Leakage Attacks in Federated Learning", Table III's "noise levels"). There is no
  clipping, so the update's sensitivity is unbounded and the noise gives **no** differential
  privacy guarantee; it is a heuristic whose effect is measured by the attacks.
- ``dp_fedavg`` (:mod:`fedaudit.defenses.dp_fedavg`): the clip-and-noise step of DP-FedAvg
  (McMahan et al. 2018, "Learning Differentially Private Recurrent Language Models", Alg. 1:
  ``ClipFn`` bounds the update's L2 norm by ``S = C``, Gaussian noise of std ``z·S`` is added),
  performed by each client on its own update (so the server never holds an un-noised one).

A third defense noises inside the local training instead: ``dp_sgd``
(:mod:`fedaudit.defenses.dp_sgd`, Abadi et al. 2016, Alg. 1: every slice's gradient clipped to
``C = max_grad_norm``, N(0, σ²C²) on each lot's sum). It runs in the clients' training loop
(Opacus), not here; :func:`perturb_update` gives its one-step form for the attacks that invert a
single slice's gradient: a lot of that one slice, i.e. ``clip(g, C) + N(0, (σC)² I)``.

The same function serves the client mod (what the federation really sends) and the attacks
and tests that need to know what a level means; :func:`fedaudit.scenarios.noise_defense`
finds a scenario's noise entry. The scenario's defense entry
(``{"name": "laplace_noise", "scale": b}`` or
``{"name": "dp_fedavg", "clip": C, "noise_multiplier": z, "delta": δ}``) carries its level,
so an attack reads the level from the scenario it attacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# the noise defenses' names live with the scenarios (a lower layer: the config and the
# federation's client read them without this module)
from fedaudit.scenarios import (
    DP_FEDAVG,
    DP_SGD,
    LAPLACE,
    NOISE_DEFENSES,
    NOISE_LEVEL,
    NoiseSettingError,
)


def global_norm(arrays: Sequence[np.ndarray]) -> float:
    """The L2 norm of all arrays taken as one vector (float64 accumulation)."""
    return float(np.sqrt(sum(float(np.sum(np.square(np.asarray(a, np.float64))))
                             for a in arrays)))


def clip_update(arrays: Sequence[np.ndarray], clip: float) -> list[np.ndarray]:
    """McMahan et al. 2018, Alg. 1, ``ClipFn`` (flat clipping): Δ · min(1, C / ‖Δ‖₂) with the
    norm taken over every array together (float64 out)."""
    norm = global_norm(arrays)
    factor = 1.0 if norm <= clip else clip / norm
    return [np.asarray(a, np.float64) * factor for a in arrays]


def _level(defense: Mapping[str, Any], key: str, positive: bool = True) -> float:
    if key not in defense:
        raise NoiseSettingError(f"defense {defense.get('name')!r}: no {key!r} setting")
    value = float(defense[key])
    if not np.isfinite(value) or value < 0 or (positive and value == 0):
        raise NoiseSettingError(f"defense {defense.get('name')!r}: {key} = {value} must be "
                                f"{'positive' if positive else 'non-negative'} and finite")
    return value


def perturb_update(arrays: Sequence[np.ndarray], defense: Mapping[str, Any],
                   seed: int | np.random.Generator) -> list[np.ndarray]:
    """The update a client sends under the noise defense ``defense`` (float32 arrays, shapes
    kept); the noise comes from ``seed`` (a generator, or an integer for
    ``numpy.random.default_rng``), drawn array by array in order, so one seed gives one
    perturbation. The client mod passes the generator of its noise source
    (:func:`fedaudit.defenses.noise_source.numpy_generator`).

    - ``laplace_noise`` (paper 003 §V): ``Δ + Lap(0, b)`` i.i.d. per coordinate,
      ``b = defense["scale"]`` (E|noise| = b, Var = 2b²).
    - ``dp_fedavg`` (McMahan et al. 2018, Alg. 1, ``ClipFn`` then the Gaussian mechanism, here
      on the client): ``Δ · min(1, C/‖Δ‖₂) + N(0, (z·C)² I)``, ``C = defense["clip"]``,
      ``z = defense["noise_multiplier"]``; ``‖Δ‖₂`` is the norm over every array together.
    - ``dp_sgd`` (Abadi et al. 2016, Alg. 1, one step on a lot of one sample; ``arrays`` is that
      sample's gradient): the same formula with ``C = defense["max_grad_norm"]``,
      ``σ = defense["noise_multiplier"]``. A whole round of DP-SGD is not an update transform:
      the clients run it (:mod:`fedaudit.defenses.dp_sgd.private`).
    """
    name = defense.get("name")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if name == LAPLACE:
        b = _level(defense, "scale")
        return [(np.asarray(a, np.float64) + rng.laplace(0.0, b, np.shape(a))
                 ).astype(np.float32) for a in arrays]
    if name == DP_FEDAVG:
        clip = _level(defense, "clip")
        std = _level(defense, "noise_multiplier", positive=False) * clip
        return [(a + rng.normal(0.0, std, a.shape)).astype(np.float32)
                for a in clip_update(arrays, clip)]
    if name == DP_SGD:
        # one DP-SGD step whose lot is this one sample: per-sample clip to C, N(0, (σC)²) on
        # the sum, divided by the expected lot size 1 (Abadi et al. 2016, Alg. 1)
        clip = _level(defense, "max_grad_norm")
        std = _level(defense, "noise_multiplier", positive=False) * clip
        return [(a + rng.normal(0.0, std, a.shape)).astype(np.float32)
                for a in clip_update(arrays, clip)]
    raise NoiseSettingError(f"{name!r} is not a noise defense (known: "
                            f"{', '.join(NOISE_DEFENSES)})")


def update_noise_std(defense: Mapping[str, Any]) -> float:
    """Per-coordinate std of the noise :func:`perturb_update` adds to a client's update:
    ``z·C`` (DP-FedAvg) or ``√2·b`` (Laplace, Var = 2b²). DP-SGD's noise is inside the local
    steps, not on the update: an error."""
    name = defense.get("name")
    if name == DP_FEDAVG:
        return float(defense["noise_multiplier"]) * float(defense["clip"])
    if name == LAPLACE:
        return float(np.sqrt(2.0)) * float(defense["scale"])
    raise NoiseSettingError(f"{name!r} adds no noise to the update a client sends")


def level_of(defense: Mapping[str, Any]) -> float:
    """The defense's noise level as the grid names it: Laplace scale b, or the DP noise
    multiplier z (DP-FedAvg) or σ (DP-SGD) (the per-coordinate std of the noise is z·C)."""
    name = defense.get("name")
    if name not in NOISE_LEVEL:
        raise NoiseSettingError(f"{name!r} is not a noise defense")
    return float(defense[NOISE_LEVEL[name][1]])
