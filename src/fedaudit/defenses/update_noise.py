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

Each family's transform lives in its folder (its :class:`fedaudit.catalog.NoiseFamily`'s
``perturb`` hook); :func:`perturb_update` finds it by the entry's name, so the same function
serves the client mod (what the federation really sends) and the attacks and tests that need
to know what a level means; :func:`fedaudit.scenarios.noise_defense` finds a scenario's noise
entry. The scenario's defense entry
(``{"name": "laplace_noise", "scale": b}`` or
``{"name": "dp_fedavg", "clip": C, "noise_multiplier": z, "delta": δ}``) carries its level,
so an attack reads the level from the scenario it attacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# the noise defenses' errors live with the scenarios (a lower layer: the config and the
# federation's client read them without this module)
from fedaudit.scenarios import NoiseSettingError


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


def level(defense: Mapping[str, Any], key: str, positive: bool = True) -> float:
    """The setting ``key`` of a defense entry, checked: finite, ≥ 0 (> 0 when ``positive``)."""
    if key not in defense:
        raise NoiseSettingError(f"defense {defense.get('name')!r}: no {key!r} setting")
    value = float(defense[key])
    if not np.isfinite(value) or value < 0 or (positive and value == 0):
        raise NoiseSettingError(f"defense {defense.get('name')!r}: {key} = {value} must be "
                                f"{'positive' if positive else 'non-negative'} and finite")
    return value


def clip_and_noise(arrays: Sequence[np.ndarray], defense: Mapping[str, Any], clip_key: str,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """The Gaussian mechanism on a clipped update: ``Δ · min(1, C/‖Δ‖₂) + N(0, (z·C)² I)`` with
    ``C = defense[clip_key]`` and ``z = defense["noise_multiplier"]`` (DP-FedAvg's client step,
    McMahan et al. 2018, Alg. 1; DP-SGD's step on a lot of one sample, Abadi et al. 2016,
    Alg. 1)."""
    clip = level(defense, clip_key)
    std = level(defense, "noise_multiplier", positive=False) * clip
    return [(a + rng.normal(0.0, std, a.shape)).astype(np.float32)
            for a in clip_update(arrays, clip)]


def _family_hook(defense: Mapping[str, Any], hook: str) -> Any:
    from fedaudit.catalog import CatalogError, loaded_noise_families, noise_hook

    name = str(defense.get("name"))
    try:
        return noise_hook(name, hook)
    except CatalogError:
        raise NoiseSettingError(f"{name!r} is not a noise defense (known: "
                                f"{', '.join(loaded_noise_families())})") from None


def perturb_update(arrays: Sequence[np.ndarray], defense: Mapping[str, Any],
                   seed: int | np.random.Generator) -> list[np.ndarray]:
    """The update a client sends under the noise defense ``defense`` (float32 arrays, shapes
    kept): its family's ``perturb`` hook (the transforms and their sources are in each noise
    defense's folder: ``laplace_noise/noise.py``, ``dp_fedavg/noise.py``,
    ``dp_sgd/noise.py``). The noise comes from ``seed`` (a generator, or an integer for
    ``numpy.random.default_rng``), drawn array by array in order, so one seed gives one
    perturbation. The client mod passes the generator of its noise source
    (:func:`fedaudit.defenses.noise_source.numpy_generator`)."""
    perturb = _family_hook(defense, "perturb")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return perturb(arrays, defense, rng)


def regenerate(shapes: Sequence[tuple[int, ...]], defense: Mapping[str, Any],
               seed: int) -> list[np.ndarray]:
    """The noise :func:`perturb_update` draws from ``seed``: its output on a zero update (the
    draws do not depend on the update; a zero update is not clipped). What a server that knows
    the seed subtracts (the noise replay, and the privacy audit's replay attack)."""
    zeros = [np.zeros(s, np.float32) for s in shapes]
    return perturb_update(zeros, defense, seed)


def update_noise_std(defense: Mapping[str, Any]) -> float:
    """Per-coordinate std of the noise :func:`perturb_update` adds to a client's update
    (``z·C`` for DP-FedAvg, ``√2·b`` for Laplace); a family whose noise is inside the local
    steps (DP-SGD) has none: an error."""
    std = _family_hook(defense, "update_std")
    if std is None:
        raise NoiseSettingError(f"{defense.get('name')!r} adds no noise to the update a client "
                                "sends")
    return float(std(defense))


def level_of(defense: Mapping[str, Any]) -> float:
    """The defense's noise level as the grid names it (its family's ``level_key``: Laplace
    scale b, or the DP noise multiplier z of DP-FedAvg, σ of DP-SGD)."""
    from fedaudit.catalog import noise_spec

    spec = noise_spec(str(defense.get("name")))
    if spec is None or spec.noise is None:
        raise NoiseSettingError(f"{defense.get('name')!r} is not a noise defense")
    return float(defense[spec.noise.level_key])
