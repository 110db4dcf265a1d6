"""Data poisoning by a malicious client: Gaussian noise blended into its training volumes.

Source: paper 000 (Raggio, Bucher et al.), section "Data Poisoning", Eq. 2:

    x_poisoned = (1 - gamma) * x + gamma * n,    n ~ N(mu_x, sigma_x)

with mu_x and sigma_x the mean and standard deviation of the original volume x, computed per
patient and separately for MR and CT; gamma = 0 keeps the image, gamma = 1 replaces it by noise
(the paper evaluates gamma in {0.1, 0.5, 1.0}).

Threat model (paper 000, Fig. 1c): the attacker controls one client's local data and nothing
else; it corrupts the data before local training, so the server only ever sees the resulting
update. The server and the honest clients are untouched.

Choices the paper leaves open, made here:

* mu_x and sigma_x are taken over the whole volume (the paper says "computed from the original
  ... volume x"), background included, and noise is added to every voxel, background included;
  sigma_x is the population standard deviation (ddof = 0).
* The head mask is not changed: Eq. 2 applies to the images, and the mask (which only selects
  the head-containing training slices) is not a network input.
* No clipping is applied here. The training target goes through
  :func:`fedaudit.intensity.hu_to_unit`, which clips CT to [-1024, 3000] HU as for every
  patient; the poisoned MR reaches the network as it is, outside [0, 1] where noise puts it.
"""

from __future__ import annotations

import math

import numpy as np

from fedaudit.data.slices import Volume
from fedaudit.runtime import derive_seed


def poison_volume(x: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
    """Eq. 2 of paper 000 on one volume; returns a new float32 array of ``x``'s shape."""
    gamma = float(gamma)
    if not (math.isfinite(gamma) and 0.0 <= gamma <= 1.0):
        raise ValueError(f"poisoning noise level gamma must be in [0, 1]; got {gamma}")
    x = np.asarray(x)
    if x.size == 0:
        raise ValueError("cannot poison an empty volume")
    if gamma == 0.0:
        # No noise is drawn: gamma = 0 is the no-poisoning baseline, returned bit-identical.
        return x.astype(np.float32, copy=True)
    # float64 accumulators: a float32 sum over 256^3 voxels loses digits of the mean.
    mu = float(np.mean(x, dtype=np.float64))
    sigma = float(np.std(x, dtype=np.float64))
    if not (math.isfinite(mu) and math.isfinite(sigma)):
        raise ValueError("cannot poison a volume with NaN or infinite voxels")
    # float32 noise halves the memory of a 256^3 draw; its precision is far below sigma.
    n = rng.standard_normal(size=x.shape, dtype=np.float32)
    n *= np.float32(sigma)
    n += np.float32(mu)
    if gamma == 1.0:
        return n
    out = x.astype(np.float32, copy=True)
    out *= np.float32(1.0 - gamma)
    out += np.float32(gamma) * n
    return out


def poison_patient(volume: Volume, gamma: float, seed: int, center: str) -> Volume:
    """Poison one training patient of ``center``: MR and CT each by Eq. 2 of paper 000, with
    their own statistics and independent noise; the mask is kept.

    The noise of each (center, patient, modality) comes from
    ``derive_seed(seed, "poison", center, volume.name, modality)``, so a scenario re-run gives
    the same poisoned data whatever order patients are processed in.
    """
    noisy = {
        modality: poison_volume(
            getattr(volume, modality), gamma,
            np.random.default_rng(derive_seed(seed, "poison", center, volume.name, modality)))
        for modality in ("mr", "ct")
    }
    return Volume(name=volume.name, mr=noisy["mr"], ct=noisy["ct"], mask=volume.mask.copy())


def poison_client(volume: Volume, params: dict, seed: int, center: str) -> Volume:
    """The catalog's client-attack hook (``client_attacks: [{name: poisoning, center, gamma}]``):
    Eq. 2 on one of the attacking center's training volumes."""
    return poison_patient(volume, float(params["gamma"]), seed, center)
