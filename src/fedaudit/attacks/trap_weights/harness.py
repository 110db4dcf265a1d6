"""One trap round of a trained federation, run with the real clients, and its ground truth.

Attacker side (:func:`run_trap_round`): the malicious server holds its own global model of the
round it attacks (the honest server log's ``global.npz``: what it was about to send) and sends
the trapped model instead (:class:`fedaudit.attacks.trap_weights.server.TrapServer`). The
clients are the federation's own (:func:`fedaudit.federation.apps.make_client_app`: the same
ClientApp, the scenario's defenses' mods, SecAgg+ included, plus any defense under test), driven
through the in-process Flower grid, one message each as in training.

Evaluator side (:func:`truth_slices`): which MR slices each client's round trained on, from the
same data code and seed the client used (:func:`fedaudit.federation.local.training_batches`).

Federation size (paper 002 Table 1 runs 6 and 12 clients): :func:`split_clients` splits the
centers with the most training patients into clients of whole patients until there are ``n``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from fedaudit.attacks.trap_weights.server import TrapServer, TrapSettings, round_settings
from fedaudit.federation.apps import make_client_app, make_server_app
from fedaudit.federation.client import SCTClient, round_training
from fedaudit.federation.local import training_batches
from fedaudit.federation.plan import ClientData, TrainPlan
from fedaudit.federation.run import run_inprocess
from fedaudit.federation.strategy import AuditStrategy, FederationError
from fedaudit.runtime import derive_seed


def split_clients(clients: tuple[ClientData, ...], n: int) -> tuple[ClientData, ...]:
    """``n`` clients from the centers' training patients: the client with the most patients
    (ties: by name) is halved until there are ``n``; parts are named ``<center>.<i>`` and keep
    whole patients (a patient's slices never straddle two clients). Validation patients stay
    with the first part."""
    if n < len(clients):
        raise ValueError(f"{n} clients requested but the federation has {len(clients)} centers")
    total = sum(len(c.train) for c in clients)
    if n > total:
        raise ValueError(f"{n} clients requested but the centers have only {total} training "
                         "patients between them (a client needs at least one)")
    groups: dict[str, list[ClientData]] = {c.center: [c] for c in clients}
    while sum(len(g) for g in groups.values()) < n:
        center, part = max(((c, p) for c, g in groups.items() for p in g),
                           key=lambda cp: (len(cp[1].train), cp[0]))
        g = groups[center]
        i = g.index(part)
        half = (len(part.train) + 1) // 2
        g[i:i + 1] = [replace(part, train=part.train[:half]),
                      replace(part, train=part.train[half:], val=())]
    out = []
    for center, g in groups.items():
        out += ([g[0]] if len(g) == 1
                else [replace(p, center=f"{center}.{i + 1}") for i, p in enumerate(g)])
    return tuple(out)


def run_trap_round(plan: TrainPlan, names: list[str], global_arrays: list[np.ndarray],
                   rnd: int, settings: TrapSettings, sample_shape: tuple[int, ...],
                   local_extra: dict[str, Any] | None = None, honest_before: bool = False
                   ) -> tuple[TrapServer, list[str]]:
    """Run round ``rnd`` of ``plan``'s federation with the malicious server; returns the server
    (its ``captures[rnd]``) and the clients' errors. Raises
    :class:`fedaudit.federation.strategy.FederationError` naming the reason when the round
    failed (an architecture check refusing the model, for instance).

    ``honest_before``: round ``rnd`` is honest (the clients receive ``global_arrays`` and train
    as in training) and the trap comes in round ``rnd + 1``, so that a client's audit has the
    model before the trap to compare with; the capture is then ``captures[rnd + 1]``."""
    trap = rnd + 1 if honest_before else rnd
    inner = AuditStrategy(centers=plan.centers, names=names, initial=global_arrays,
                          aggregation=plan.scenario.aggregation, first_round=rnd,
                          total_rounds=trap, log_dir=None,
                          aggregation_params=plan.scenario.aggregation_params,
                          plugins=plan.plugins, connect_timeout=5.0)
    server = TrapServer(inner, settings, {trap}, base=plan.model_base,
                        sample_shape=sample_shape, seed=plan.seed, local_extra=local_extra)
    errors = run_inprocess(plan, make_server_app(plan, server, trap - rnd + 1),
                           make_client_app(plan))
    if trap not in server.captures:
        reason = inner.error or "\n".join(errors) or "no reply"
        raise FederationError(f"trap round {trap} failed: {reason}")
    return server, errors


def truth_slices(plan: TrainPlan, center: str, rnd: int, settings: TrapSettings,
                 local_extra: dict[str, Any] | None = None) -> np.ndarray:
    """The MR slices (N, H, W) client ``center`` trained on in trap round ``rnd``: its training
    volumes as its client loads them, the round's local settings, the client's seed."""
    client = SCTClient(plan, center)
    config = {"round": rnd, "local": json.dumps(round_settings(settings, local_extra))}
    local, _, max_batches = round_training(plan, config)
    seed = derive_seed(plan.seed, "train", center, rnd)
    batches = [mr for mr, _ in training_batches(client._train_volumes(), local, seed=seed,
                                                device=torch.device("cpu"),
                                                max_batches=max_batches)]
    return torch.cat(batches)[:, 0].numpy()


def with_clients(plan: TrainPlan, n_clients: int | None, batch_size: int | None,
                 extra_defenses: tuple[dict[str, Any], ...] = ()) -> TrainPlan:
    """``plan`` with ``n_clients`` clients (:func:`split_clients`), another local batch size
    and defenses added to its scenario."""
    clients = plan.clients if n_clients is None else split_clients(plan.clients, n_clients)
    local = plan.local if batch_size is None else replace(plan.local, batch_size=batch_size)
    scenario = replace(plan.scenario, defenses=(*plan.scenario.defenses, *extra_defenses))
    return replace(plan, clients=clients, local=local, scenario=scenario)
