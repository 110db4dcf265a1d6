"""The client side: a hospital that trains the shared model on its own patients.

Each center holds its preprocessed train/validation volumes (never sent anywhere). Per round it
receives the global model, trains locally (:mod:`fedaudit.federation.local`) and returns its
update Δw_k = w_k − w_global with its slice count (the FedAvg weight) and its training
statistics. Under a privacy defense (SecAgg+, client noise) the reply carries the update, the
center's name and its enrolment weight only; its loss, validation score, throughput and count go
to its own record (:mod:`fedaudit.federation.client_record`), never to the server. A malicious
center (a scenario's ``client_attacks``, e.g. paper 000's data poisoning, Eq. 2) transforms its
own training volumes before training with the attack's registered hook (:mod:`fedaudit.catalog`);
everything else about it is honest.

What the server sends with a round may go beyond the weights, as when clients run
server-supplied training code (paper 002's threat model): a model definition
(``config["model"]``, :mod:`fedaudit.models.definition`; the agreed UNet when absent) and local
training settings (``config["local"]``: :class:`fedaudit.federation.local.LocalConfig` fields and
``max_batches``). Honest servers send neither; the clients' architecture check
(:mod:`fedaudit.defenses.architecture_check`) refuses a model that is not the enrolled one.

The enrolled model is the scenario's (:meth:`fedaudit.federation.plan.TrainPlan.model_definition`:
the GroupNorm UNet under DP-SGD). A defense that changes the local training itself (DP-SGD:
per-sample clipping and noise in every step) is built per round by :func:`local_training` from the
catalog and handed to :func:`~fedaudit.federation.local.train_local`.

Determinism (DESIGN.md): numpy, torch and python RNGs are seeded from (seed, center, round) at
the start of every round; SecAgg+'s stochastic quantisation draws from numpy's global RNG right
after training, so it is covered too.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import replace
from functools import lru_cache

import numpy as np
import torch
from flwr.client import Client, NumPyClient
from flwr.common import Config, NDArrays, Scalar

from fedaudit.catalog import catalog, resolve
from fedaudit.data.slices import Volume, load_volume
from fedaudit.federation.client_record import update_record
from fedaudit.federation.local import LocalConfig, LocalTraining, round_lr, train_local, validate
from fedaudit.federation.plan import TrainPlan
from fedaudit.federation.server_settings import ServerSettingError, check_local, check_model
from fedaudit.models import definition
from fedaudit.models.device import resolve_device
from fedaudit.models.weights import get_arrays, set_arrays, subtract
from fedaudit.runtime import derive_seed

log = logging.getLogger(__name__)


@lru_cache(maxsize=16)
def _volumes(folders: tuple[str, ...], attacks: tuple[tuple[str, str], ...], seed: int,
             center: str, plugins: tuple[str, ...] = ()) -> tuple[Volume, ...]:
    """The center's volumes, transformed by each client attack it runs (``attacks``: (name,
    JSON of its params) pairs, hashable for the cache)."""
    vols = [load_volume(f) for f in folders]
    for name, params in attacks:
        spec = catalog(plugins).client_attacks[name]
        transform = resolve(spec.transform, spec.package)
        vols = [transform(v, json.loads(params), seed, center) for v in vols]
    return tuple(vols)


@lru_cache(maxsize=2)
def _model_from(definition_json: str) -> torch.nn.Module:
    return definition.build(json.loads(definition_json))


def local_training(plan: TrainPlan, seed: int) -> LocalTraining | None:
    """The scenario's defense that changes the local training itself (DP-SGD), built for one
    round from its settings and the round ``seed`` (``DefenseSpec.local_training``), or None."""
    hook = catalog(plan.plugins).defense_hook(plan.scenario, "local_training")
    if hook is None:
        return None
    settings, spec = hook
    return resolve(spec.local_training, spec.package)(settings, seed)


def round_training(plan: TrainPlan, config: Config) -> tuple[LocalConfig, float, int | None]:
    """The local settings of a round: the plan's, with what the server's round config sets
    (refused with a :class:`~fedaudit.federation.server_settings.ServerSettingError` naming the
    field when outside the client's bounds); the learning rate is the plan's schedule unless the
    server set one."""
    rnd = config.get("round")
    try:
        overrides = json.loads(str(config.get("local", "{}")))
    except json.JSONDecodeError as err:
        raise ServerSettingError(rnd, "local", config.get("local"), f"JSON ({err})") from None
    if not isinstance(overrides, dict):
        raise ServerSettingError(rnd, "local", overrides, "a JSON object")
    # what a round may set (the server ships the training code, paper 002's threat model):
    # LocalConfig fields and max_batches, each within the client's bounds
    check_local(overrides, plan.server_settings, rnd)
    max_batches = overrides.pop("max_batches", None)
    if overrides.get("slab") is not None:
        overrides["slab"] = tuple(int(i) for i in overrides["slab"])
    local = replace(plan.local, **overrides)
    lr = local.lr if "lr" in overrides else round_lr(local, int(config["round"]), plan.rounds)
    return local, lr, max_batches


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
        mine = tuple((a["name"], json.dumps({k: v for k, v in a.items()
                                              if k not in ("name", "center")}, sort_keys=True))
                     for a in self.plan.scenario.client_attacks if a["center"] == self.center)
        return _volumes(self.data.train, mine, self.plan.seed, self.center, self.plan.plugins)

    def _sample_size(self) -> int | None:
        """Values in one of this client's training samples (an axial MR slice), or None when
        it has no training volume."""
        vols = self._train_volumes()
        return int(vols[0].mr.shape[1] * vols[0].mr.shape[2]) if vols else None

    def fit(self, parameters: NDArrays, config: Config
            ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        rnd = int(config["round"])
        seed = derive_seed(self.plan.seed, "train", self.center, rnd)
        seed_everything(seed)
        # The model the server sent: the agreed UNet unless its round config defines another
        # (:mod:`fedaudit.models.definition`; an architecture check may refuse it first).
        sent = config.get("model")
        if sent is None:
            defn = self.plan.model_definition()
        else:  # within the client's bounds: no server-sized allocation (server_settings)
            defn = check_model(json.loads(str(sent)), self.plan.server_settings,
                               self._sample_size(), rnd)
        model = _model_from(definition.to_json(defn))
        set_arrays(model, parameters)
        local, lr, max_batches = round_training(self.plan, config)
        stats = train_local(model, self._train_volumes(), local, seed=seed,
                            device=self.device, amp=self.plan.amp, lr=lr,
                            max_batches=max_batches, private=local_training(self.plan, seed))
        update = subtract(get_arrays(model), parameters)
        n = int(stats.pop("num_examples"))
        # the client's own record holds everything; under a privacy defense its reply holds
        # only the update, the center's name and the enrolment weight (client_record)
        update_record(self.plan.out_dir, self.center, rnd, {"num_examples": n, **stats})
        log.info("client %s round %d: %d slices, loss %.4f, %.1f slices/s", self.center, rnd, n,
                 stats["train_loss"], stats["slices_per_s"])
        if self.plan.private_replies:
            return update, self.plan.fedavg_weight(self.center, n), {"center": self.center}
        return update, n, {"center": self.center, **stats}

    def evaluate(self, parameters: NDArrays, config: Config
                 ) -> tuple[float, int, dict[str, Scalar]]:
        if not self.data.val:
            return 0.0, 0, {"center": self.center}
        model = _model_from(definition.to_json(self.plan.model_definition()))
        set_arrays(model, parameters)
        vols = _volumes(self.data.val, (), self.plan.seed, self.center, self.plan.plugins)
        res = validate(model, vols, self.plan.local, device=self.device, amp=self.plan.amp)
        update_record(self.plan.out_dir, self.center, int(config["round"]), res)
        if self.plan.private_replies:  # the validation score stays at the hospital
            return 0.0, 0, {"center": self.center}
        return float(res["val_mae"]), int(res["val_voxels"]), {"center": self.center, **res}


def client_for(plan: TrainPlan, partition_id: int) -> Client:
    """Partition i is the i-th training center in sorted order."""
    centers = sorted(plan.centers)
    return SCTClient(plan, centers[partition_id]).to_client()
