"""The apps a federation runs, shared by the in-process backends (:mod:`fedaudit.federation.run`)
and the deployed one (:mod:`fedaudit.federation.deployment`): the seeded initial model, the
clients' app with its defenses' mods, the server's app and workflow, and the strategy that
checkpoints every round and resumes from the newest checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.clientapp import ClientApp
from flwr.common import Context
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import Strategy
from flwr.server.workflow import DefaultWorkflow
from flwr.serverapp.grid import Grid

from fedaudit.catalog import catalog, resolve
from fedaudit.federation import checkpoint
from fedaudit.federation.client import SCTClient, client_for
from fedaudit.federation.plan import TrainPlan
from fedaudit.federation.strategy import AuditStrategy
from fedaudit.models import definition
from fedaudit.models.unet import UNet2D
from fedaudit.models.weights import get_arrays


def initial_model(plan: TrainPlan) -> UNet2D:
    """The seeded initial global model: the scenario's UNet (GroupNorm under DP-SGD)."""
    torch.manual_seed(plan.seed)  # every scenario of a study starts from the same weights
    return definition.build(plan.model_definition())


def make_client_app(plan: TrainPlan) -> ClientApp:
    """The clients' app, wrapped in the client mods of the scenario's defenses. A node whose
    config names its ``center`` (a deployed SuperNode) is that center's client; otherwise its
    ``partition-id`` picks the center (:func:`fedaudit.federation.client.client_for`)."""
    def client_fn(context: Context):
        center = context.node_config.get("center")
        if center is not None:
            return SCTClient(plan, str(center)).to_client()
        return client_for(plan, int(context.node_config["partition-id"]))

    cat = catalog(plan.plugins)
    mods = []
    for d in plan.scenario.defenses:
        spec = cat.defenses[d["name"]]
        if spec.client_mods is not None:
            mods += resolve(spec.client_mods, spec.package)(plan)
    return ClientApp(client_fn=client_fn, mods=mods)


def make_server_app(plan: TrainPlan, strategy: Strategy, num_rounds: int) -> ServerApp:
    """The server's app: Flower's default workflow, with the fit workflow of a defense that
    brings one (SecAgg+) and the strategy as the scenario's server behaviour wraps it."""
    app = ServerApp()
    app.main()(server_main(plan, strategy, num_rounds))
    return app


def server_main(plan: TrainPlan, strategy: Strategy, num_rounds: int
                ) -> Callable[[Grid, Context], None]:
    """The body of :func:`make_server_app`'s app, for a ServerApp built elsewhere (the deployed
    one, :mod:`fedaudit.federation.deployed_app`, builds its strategy in its own process)."""
    cat = catalog(plan.plugins)
    workflow = cat.defense_hook(plan.scenario, "fit_workflow")
    server = cat.servers[plan.scenario.server]
    if server.wrap is not None:
        strategy = resolve(server.wrap, server.package)(strategy, plan)

    def main(grid: Grid, context: Context) -> None:
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=num_rounds),
                               strategy=strategy)
        fit_workflow = None
        if workflow is not None:
            settings, spec = workflow
            fit_workflow = resolve(spec.fit_workflow, spec.package)(plan, settings)
        DefaultWorkflow(fit_workflow=fit_workflow)(grid, legacy)

    return main


def checkpoint_dir(plan: TrainPlan) -> Path:
    return Path(plan.out_dir) / "checkpoints"


def resume_point(plan: TrainPlan, model: torch.nn.Module
                 ) -> tuple[int, list[np.ndarray], list[dict[str, Any]]]:
    """(first round to train, global arrays before it, history so far): from this run's newest
    checkpoint, else round 1 from ``model`` (:func:`initial_model`). ``plan.rounds + 1`` when
    the final round is checkpointed already."""
    ck = checkpoint.latest(checkpoint_dir(plan), plan.fingerprint())
    if ck is None:
        return 1, get_arrays(model), []
    return min(ck.round, plan.rounds) + 1, ck.arrays, ck.history


def make_strategy(plan: TrainPlan, names: list[str], start: int, arrays: list[np.ndarray],
                  history: list[dict[str, Any]]) -> AuditStrategy:
    """The run's strategy from round ``start`` on: it writes the server log under
    ``checkpoints/server_log`` and a checkpoint after every round."""
    ckpt_dir = checkpoint_dir(plan)
    fp = plan.fingerprint()

    def on_round_end(rnd: int, global_arrays: list[np.ndarray], hist: list[dict]) -> None:
        checkpoint.save(ckpt_dir, checkpoint.Checkpoint(rnd, global_arrays, hist, fp))

    return AuditStrategy(
        centers=plan.centers, names=names, initial=arrays,
        aggregation=plan.scenario.aggregation, first_round=start, total_rounds=plan.rounds,
        log_dir=str(ckpt_dir / "server_log"),
        log_rounds=plan.log_rounds, aggregation_params=plan.scenario.aggregation_params,
        plugins=plan.plugins, history=history, on_round_end=on_round_end,
        weights=(plan.enrolment_weights()
                 if plan.private_replies and not plan.trust_reported_counts else None))
