"""The noise replay: the server regenerates a client's privacy noise and subtracts it.

Threat: the honest-but-curious server holds the config (the seed), the code (the clients' noise
function :func:`fedaudit.defenses.update_noise.perturb_update` and the seed derivation
:func:`fedaudit.defenses.noise_source.noise_seed`), the round number and each client's center. It
calls the client's own noise function on a zero update with the seed it derives -- which returns
exactly the noise the client drew, if the client drew it from that seed -- and subtracts it from
the update it received. Against ``noise_source: simulation`` this gives back the clipped update
(DP-FedAvg: residual norm = C whenever the update was clipped) or the clean update (Laplace);
against the default OS-entropy source (:mod:`fedaudit.defenses.noise_source`) it must not.

Score (from the server's own view, no ground truth needed): with the received update
``u = Δ + n``, the replayed noise ``n'`` and a null replay ``n₀`` from a seed the client never
used (the same center and defense, a round that never ran),

    removed = (‖u − n₀‖² − ‖u − n'‖²) / (2·d·σ²)

is the share of the noise energy the replay took out: ‖u − n₀‖² ≈ ‖Δ‖² + 2dσ² always, and
‖u − n'‖² is ‖Δ‖² when ``n' = n`` (removed ≈ 1) and ‖Δ‖² + 2dσ² when it is an independent draw
(removed ≈ 0); σ² is the noise's per-coordinate variance ((zC)² for DP-FedAvg, 2b² for Laplace)
and d the update's size. Under "not regenerated" the share's standard deviation is
``√(2/d + 2‖Δ‖²/(d²σ²))`` (the two noise energies and their cross terms with Δ; Gaussian
noise, Laplace's heavier tail adds a little), with ‖Δ‖² estimated by the server as
max(‖u‖² − dσ², 0): each row reports it (``removed_sd``), so a row whose noise is too weak to
tell the two cases apart says so. The update is *recovered* when removed ≥ 0.5; at the demo's
DP-FedAvg level the two cases are hundreds of standard deviations apart.

Positive control, in the audited setting: the same round's received update, taken as a client's
clean update, is noised with the client's function under the simulation source (with the seed of
a round no federation runs, so it is independent of the logged noise) and replayed; it must come
back as its clipped self (cosine ≈ 1, norm min(‖u‖, C)). It shows that the replay code
regenerates noise whenever the noise is regenerable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedaudit.defenses.noise_source import SIMULATION, noise_seed, source_of
from fedaudit.defenses.update_noise import (
    clip_update,
    global_norm,
    level_of,
    perturb_update,
    regenerate,
    update_noise_std,
)
from fedaudit.scenarios import noise_on_update


def replayable(name: str) -> bool:
    """Whether the defense ``name`` is update noise the server could subtract: a noise family
    whose noise is on the update (``NoiseFamily.on_update``). DP-SGD's noise is inside every
    local step, not on the update, so there is nothing to subtract from what the server
    receives."""
    return noise_on_update(name)


def replayable_names() -> list[str]:
    """The replayable noise defenses this process knows (for messages)."""
    from fedaudit.catalog import loaded_noise_families

    return [n for n, f in loaded_noise_families().items() if f.on_update]
RECOVERED_SHARE = 0.5
# rounds no federation runs: the null replay's seed is one the client never used, and the
# control's noise is independent of the logged one
NULL_ROUND_OFFSET = 1_000_003
CONTROL_ROUND_OFFSET = 2_000_003
# the "not regenerated" case must sit this many standard deviations below RECOVERED_SHARE for
# a row to have the power to tell the cases apart
POWER_SDS = 5.0


def _flat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])


def replay(received: Sequence[np.ndarray], defense: Mapping[str, Any], seed: int,
           center: str, rnd: int) -> dict[str, Any]:
    """Replay ``defense``'s noise on one received update (the server's arrays for ``center``
    in round ``rnd``): the residual's norm, the null's, the share of noise removed and whether
    the update was recovered (module docstring)."""
    return _replay(received, defense, seed, center, rnd)[0]


def _replay(received: Sequence[np.ndarray], defense: Mapping[str, Any], seed: int,
            center: str, rnd: int) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`replay`'s row and the residual itself (flat, float64)."""
    name = str(defense["name"])
    shapes = [np.shape(a) for a in received]
    u = _flat(received)
    d = u.size
    var = update_noise_std(defense) ** 2
    replayed = _flat(regenerate(shapes, defense, noise_seed(seed, name, center, rnd)))
    null = _flat(regenerate(shapes, defense,
                            noise_seed(seed, name, center, rnd + NULL_ROUND_OFFSET)))
    residual = u - replayed
    res2, null2 = float(residual @ residual), float((u - null) @ (u - null))
    removed = (null2 - res2) / (2.0 * d * var)
    signal2 = max(float(u @ u) - d * var, 0.0)
    sd = float(np.sqrt(2.0 / d + 2.0 * signal2 / (d * d * var)))
    out = {"parameters": d, "noise_std": float(np.sqrt(var)),
           "received_norm": float(np.linalg.norm(u)),
           "residual_norm": float(np.sqrt(res2)), "null_residual_norm": float(np.sqrt(null2)),
           "noise_norm_expected": float(np.sqrt(d * var)),
           "removed_share": float(removed), "removed_sd": sd,
           "powered": bool(RECOVERED_SHARE >= POWER_SDS * sd),
           "recovered": bool(removed >= RECOVERED_SHARE)}
    if "clip" in defense:  # a family that clips the update first (DP-FedAvg)
        out["clip"] = float(defense["clip"])
    return out, residual


def control(received: Sequence[np.ndarray], defense: Mapping[str, Any], seed: int,
            center: str, rnd: int) -> dict[str, Any]:
    """The positive control: ``received`` taken as a clean update, noised by the client's
    function with simulation noise, replayed; the residual must be the clipped update."""
    sim = {**defense, "noise_source": SIMULATION}
    name = str(defense["name"])
    rnd = rnd + CONTROL_ROUND_OFFSET
    noised = perturb_update(received, sim, noise_seed(seed, name, center, rnd))
    got, residual = _replay(noised, sim, seed, center, rnd)
    truth = _flat(clip_update(received, float(defense["clip"])) if "clip" in defense
                  else received)
    cos = float(residual @ truth / (np.linalg.norm(residual) * np.linalg.norm(truth)))
    return {"control_removed_share": got["removed_share"],
            "control_recovered": got["recovered"],
            "control_cosine": cos,
            "control_norm_ratio": float(np.linalg.norm(residual) / global_norm([truth]))}


def attack_round(updates: Mapping[str, Mapping[str, np.ndarray]], names: Sequence[str],
                 update_file: Mapping[str, str], defense: Mapping[str, Any], seed: int,
                 rnd: int) -> list[dict[str, Any]]:
    """Every client's row for one logged round (``RoundLog`` fields); a client whose update
    the server holds only inside an aggregate (SecAgg+) gets a row saying so."""
    rows = []
    for center in sorted(updates):
        row: dict[str, Any] = {"round": int(rnd), "center": center,
                               "defense": defense["name"], "level": level_of(defense),
                               "noise_source": source_of(defense)}
        if not update_file[center].startswith(f"update_{center}."):
            rows.append({**row, "attacked": False,
                         "why": "the server holds only the aggregate of the updates"})
            continue
        arrays = [updates[center][n] for n in names]
        rows.append({**row, "attacked": True, **replay(arrays, defense, seed, center, rnd),
                     **control(arrays, defense, seed, center, rnd)})
    return rows
