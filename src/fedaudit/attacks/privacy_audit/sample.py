"""Sample-level canaries through the clients' real DP-SGD (:mod:`fedaudit.defenses.dp_sgd`): the
one-run audit of DP-SGD at the mechanism level, on a linear model whose gradient is the canary
itself. Apart from :mod:`.canaries` because it needs torch and Opacus, which the report's
environment (the audit table) does not have."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fedaudit.attacks.privacy_audit.canaries import CanaryDesign, canary_directions


def run_sample_canaries(entry: Mapping[str, Any], design: CanaryDesign, seed: int, *,
                        lot_size: int, epochs: int, simulation_seed: int | None = None
                        ) -> tuple[dict[str, np.ndarray], np.ndarray, list[tuple[float, int]]]:
    """Sample-level canaries through the clients' real DP-SGD (:mod:`fedaudit.defenses.dp_sgd`:
    Opacus' per-sample clip, Poisson lots and noise, as a client trains): the client's data are
    the included canaries, slices whose loss gradient is ``norm · u_i`` on a linear model (the
    mechanism without a UNet: the gradient is the canary itself, so nothing but the defense
    decides what the server sees). The server receives the round's update and scores each
    canary along its direction. Returns the scores, the inclusion flags and the DP-SGD events
    ``(q, steps)`` the client reports to its accountant.

    ``simulation_seed`` seeds the lots and the noise (tests); None keeps the client's source."""
    import torch
    from torch import nn

    from fedaudit.defenses.dp_sgd.private import DPSGDTraining

    u, included = canary_directions(design, seed)
    clip = float(entry["max_grad_norm"])
    data = torch.from_numpy(design.norm_factor * clip * u[included]).float()
    model = nn.Linear(design.dim, 1, bias=False)
    nn.init.zeros_(model.weight)
    settings = dict(entry)
    if simulation_seed is not None:
        settings["noise_source"] = "simulation"
    training = DPSGDTraining(settings, seed=simulation_seed or 0)
    net, optimizer = training.attach(model, torch.optim.SGD(model.parameters(), lr=1.0),
                                     lot_size)
    for _ in range(epochs):
        for idx in training.index_batches(int(data.shape[0]), lot_size):
            optimizer.zero_grad(set_to_none=True)
            if idx.numel():
                # loss −⟨w, x⟩: each slice's gradient is −x, clipped to −C·u_i
                (-net(data[idx]).mean()).backward()
            training.step(optimizer)
    training.detach()
    weights = model.weight.detach().double().numpy().ravel()
    scores = {"direct": u @ weights}
    return scores, included, [(float(q), int(n)) for q, n in training.events]
