"""The models an evasion job attacks and evaluates on: every training client's local model of
the last round, and the final global model.

Local model of client k in the last round R: ``w_k = w_global^R + Δ_k^R``, the global model it
received at the start of round R plus the update it computed. Two ways to have it:

- **from the server log** (``source = "server_log"``): ``global.npz`` of round R is
  ``w_global^R`` and ``update_<k>.npz`` what the server received from k (read as FedMIA and DLG
  read them, :func:`fedaudit.federation.server_log.load_round`). That *is* Δ_k when the client
  sent its update as computed: plain FedAvg, FedMedian, the robust rules, DP-SGD (whose noise is
  inside the local training) and poisoning.
- **recomputed** (``source = "recomputed"``): when the log does not hold Δ_k -- under an
  update-noise defense (Laplace, DP-FedAvg: the client noises its update before sending, so
  ``w_global + noisy Δ`` is not any model a hospital holds; at the demo's DP-FedAvg level the
  noise has std 5 per weight) or under SecAgg+ (the server holds only the sum) -- round R's
  local training is re-run with the client's own code (:class:`fedaudit.federation.client.
  SCTClient`, its data, its poisoning if any) from ``w_global^R``. Clients seed numpy, torch
  and Python from (seed, center, round) at the start of every round, so this reproduces Δ_k
  (on the CPU bit for bit: ``tests/test_evasion.py`` in this folder checks it against the log
  of a clean federation, and against the log minus the client's own noise under Laplace noise).

Parties: the attacker's own local model is its white-box target (it computed it; recomputing
it is the same computation). The victims' local models and the final global model are the
evaluator's: the attacker never reads them, it only hands over its perturbed inputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from fedaudit.attacks.views import ClientView
    from fedaudit.federation.plan import TrainPlan
    from fedaudit.federation.server_log import RoundLog

log = logging.getLogger(__name__)


@dataclass
class LocalModel:
    center: str
    model: torch.nn.Module
    source: str  # server_log | recomputed


def log_holds_updates(scenario: Any) -> bool:
    """Whether the server log's ``update_<center>.npz`` are the clients' own updates: not under
    SecAgg+ (the aggregate only) nor under an update-noise defense (noised before sending)."""
    from fedaudit.scenarios import noise_defense

    return not scenario.secagg and noise_defense(scenario.defenses) is None


def recompute_update(plan: TrainPlan, center: str, logged: RoundLog) -> list[np.ndarray]:
    """Client ``center``'s update of ``logged``'s round, recomputed with its own training code
    from the global model it received (arrays in the log's parameter order)."""
    from fedaudit.federation.client import SCTClient

    client = SCTClient(plan, center)
    update, _, _ = client.fit([logged.global_arrays[n] for n in logged.names],
                              {"round": logged.round})
    return update


def last_round_models(view: ClientView, plan: TrainPlan | None, centers: list[str],
                      from_log: bool, threads: int = 1) -> tuple[int, list[LocalModel]]:
    """Every client's local model of the last logged round (module docstring), in ``centers``
    order, with where it came from; ``plan`` (the scenario's federation) is needed only to
    recompute (``from_log`` false)."""
    rnd = view.last_round()
    logged = view.received(rnd)
    if not from_log:
        if plan is None:
            raise ValueError("recomputing local models needs the scenario's training plan")
        plan = replace(plan, threads=threads)
    out = []
    for c in centers:
        if from_log:
            if c not in logged.updates:
                raise ValueError(f"the server log's round {rnd} holds no update of client "
                                 f"{c} (clients: {sorted(logged.updates)})")
            update = [logged.updates[c][n] for n in logged.names]
            source = "server_log"
        else:
            update = recompute_update(plan, c, logged)
            source = "recomputed"
        out.append(LocalModel(c, view.local_model(logged, update), source))
        log.info("client %s: local model of round %d %s", c, rnd,
                 "read from the server log" if from_log else "recomputed by its own training")
    return rnd, out
