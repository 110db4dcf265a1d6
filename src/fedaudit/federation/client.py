"""The client side: a hospital that trains the shared model on its own patients.

Each center holds its preprocessed train/validation volumes (never sent anywhere). Per round it
receives the global model, trains locally (:mod:`fedaudit.federation.local`) and returns its
update Δw_k = w_k − w_global with its slice count (the FedAvg weight). A poisoned center (paper
000, "Data Poisoning", Eq. 2) corrupts its own training volumes before training; everything
else about it is honest.

Determinism (DESIGN.md): numpy, torch and python RNGs are seeded from (seed, center, round) at
the start of every round; SecAgg+'s stochastic quantisation draws from numpy's global RNG right
after training, so it is covered too.
"""

from __future__ import annotations

import logging
import random
from functools import lru_cache

import numpy as np
import torch
from flwr.client import Client, NumPyClient
from flwr.common import Config, NDArrays, Scalar

from fedaudit.attacks.poisoning import poison_patient
from fedaudit.data.slices import Volume, load_volume
from fedaudit.federation.local import resolve_device, round_lr, train_local, validate
from fedaudit.federation.plan import TrainPlan
from fedaudit.federation.weights import get_arrays, set_arrays, subtract
from fedaudit.models.unet import UNet2D
from fedaudit.runtime import derive_seed

log = logging.getLogger(__name__)


@lru_cache(maxsize=16)
def _volumes(folders: tuple[str, ...], poison_gamma: float, seed: int, center: str
             ) -> tuple[Volume, ...]:
    vols = [load_volume(f) for f in folders]
    if poison_gamma > 0:
        vols = [poison_patient(v, poison_gamma, seed, center) for v in vols]
    return tuple(vols)


@lru_cache(maxsize=2)
def _model(base: int) -> UNet2D:
    return UNet2D(base=base)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    # SecAgg+'s stochastic rounding draws from numpy's legacy global RNG, so it is seeded too.
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


class SCTClient(NumPyClient):
    """One center's Flower client (legacy NumPyClient: the API SecAgg+'s mod wraps)."""

    def __init__(self, plan: TrainPlan, center: str) -> None:
        self.plan = plan
        self.center = center
        self.data = plan.client(center)
        torch.set_num_threads(max(1, plan.threads))
        self.device = resolve_device(plan.device)

    def _train_volumes(self) -> tuple[Volume, ...]:
        s = self.plan.scenario
        gamma = s.gamma if s.poison_center == self.center else 0.0
        return _volumes(self.data.train, gamma, self.plan.seed, self.center)

    def fit(self, parameters: NDArrays, config: Config
            ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        rnd = int(config["round"])
        seed = derive_seed(self.plan.seed, "train", self.center, rnd)
        seed_everything(seed)
        model = _model(self.plan.model_base)
        set_arrays(model, parameters)
        stats = train_local(model, self._train_volumes(), self.plan.local, seed=seed,
                            device=self.device, amp=self.plan.amp,
                            lr=round_lr(self.plan.local, rnd, self.plan.rounds))
        update = subtract(get_arrays(model), parameters)
        n = int(stats.pop("num_examples"))
        log.info("client %s round %d: %d slices, loss %.4f, %.1f slices/s", self.center, rnd, n,
                 stats["train_loss"], stats["slices_per_s"])
        return update, n, {"center": self.center, **stats}

    def evaluate(self, parameters: NDArrays, config: Config
                 ) -> tuple[float, int, dict[str, Scalar]]:
        if not self.data.val:
            return 0.0, 0, {"center": self.center}
        model = _model(self.plan.model_base)
        set_arrays(model, parameters)
        vols = _volumes(self.data.val, 0.0, self.plan.seed, self.center)
        res = validate(model, vols, self.plan.local, device=self.device, amp=self.plan.amp)
        return float(res["val_mae"]), int(res["val_voxels"]), {"center": self.center, **res}


def client_for(plan: TrainPlan, partition_id: int) -> Client:
    """Partition i is the i-th training center in sorted order."""
    centers = sorted(plan.centers)
    return SCTClient(plan, centers[partition_id]).to_client()
