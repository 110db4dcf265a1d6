"""Run one scenario's federated training end to end: apps, backend, checkpoints, outputs.

Outputs in ``plan.out_dir``: ``model.pt`` (final global model), ``history.tsv`` (per round and
center: slices, training loss, validation MAE, timings), ``server_log/`` (see
:mod:`fedaudit.federation.server_log`) and ``checkpoints/`` (kept out of Snakemake's outputs so a
killed job's checkpoints survive and the re-run resumes from them).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from flwr.app import RecordDict
from flwr.clientapp import ClientApp
from flwr.common import Context
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.workflow import DefaultWorkflow
from flwr.supercore.task_identity import TaskIdentity

from fedaudit.data.slices import load_volume
from fedaudit.evaluation.reference import ConstantModel
from fedaudit.federation import checkpoint
from fedaudit.federation.client import client_for
from fedaudit.federation.grid import InProcessGrid
from fedaudit.federation.local import validate
from fedaudit.federation.plan import TrainPlan
from fedaudit.federation.secagg_view import CapturingSecAggPlusWorkflow
from fedaudit.federation.strategy import AuditStrategy, FederationError
from fedaudit.federation.weights import exchanged_names, get_arrays, set_arrays
from fedaudit.io import read_header
from fedaudit.models.unet import UNet2D

log = logging.getLogger(__name__)

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")


def initial_model(plan: TrainPlan) -> UNet2D:
    torch.manual_seed(plan.seed)  # every scenario of a study starts from the same weights
    return UNet2D(base=plan.model_base)


def max_examples(plan: TrainPlan) -> float:
    """Upper bound on the slices a client reports in one round (SecAgg+'s ``max_weight``)."""
    if plan.secagg.max_weight is not None:
        return float(plan.secagg.max_weight)
    cap = plan.local.max_slices_per_volume
    bound = 0
    for c in plan.clients:
        n = 0
        for folder in c.train:
            if cap is not None:
                n += cap
            else:  # at most every slice of the cube in its epoch orientation
                n += max(read_header(Path(folder) / "mr.nii.gz", "MR").GetSize())
        bound = max(bound, n * plan.local.local_epochs)
    return float(bound + 1)


def make_client_app(plan: TrainPlan) -> ClientApp:
    def client_fn(context: Context):
        return client_for(plan, int(context.node_config["partition-id"]))

    mods = []
    if plan.scenario.secagg:
        from flwr.client.mod import secaggplus_mod

        mods.append(secaggplus_mod)
    return ClientApp(client_fn=client_fn, mods=mods)


def make_server_app(plan: TrainPlan, strategy: AuditStrategy, num_rounds: int) -> ServerApp:
    app = ServerApp()
    n = len(plan.clients)

    @app.main()
    def main(grid, context: Context) -> None:
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=num_rounds),
                               strategy=strategy)
        fit_workflow = None
        if plan.scenario.secagg:
            sa = plan.secagg
            # Flower refuses an integer share count <= 2; the float 1.0 means "all clients",
            # which is the default's meaning and lets a two-center federation use SecAgg+.
            # Flower's workflow, which also logs each client's masked vector (secagg_view).
            fit_workflow = CapturingSecAggPlusWorkflow(
                num_shares=sa.num_shares or (n if n > 2 else 1.0),
                reconstruction_threshold=sa.reconstruction_threshold or n // 2 + 1,
                max_weight=max_examples(plan), clipping_range=sa.clipping_range,
                quantization_range=sa.quantization_range)
        DefaultWorkflow(fit_workflow=fit_workflow)(grid, legacy)

    return app


def _run_inprocess(plan: TrainPlan, server_app: ServerApp, client_app: ClientApp) -> list[str]:
    grid = InProcessGrid(client_app, len(plan.clients))
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = grid.run.run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    ctx = Context(run_id=grid.run.run_id, node_id=SUPERLINK_NODE_ID, node_config={},
                  state=RecordDict(), run_config={})
    try:
        server_app(grid, ctx)
    except FederationError:
        pass  # the strategy recorded it; train_federation reports it with the client tracebacks
    return grid.errors


def _run_ray(plan: TrainPlan, server_app: ServerApp, client_app: ClientApp) -> list[str]:
    try:
        from flwr.simulation import run_simulation
    except ImportError as err:  # pragma: no cover - depends on the install
        raise RuntimeError("train.backend 'ray' needs Flower's simulation extra: "
                           "pip install 'flwr[simulation]'") from err
    resources: dict[str, Any] = {"num_cpus": plan.ray_num_cpus, "num_gpus": plan.ray_num_gpus}
    run_simulation(server_app=server_app, client_app=client_app,
                   num_supernodes=len(plan.clients),
                   backend_config={"client_resources": resources,
                                   "init_args": {"num_cpus": max(1, plan.threads),
                                                 "include_dashboard": False,
                                                 "log_to_driver": True}})
    return []


def constant_validation_mae(plan: TrainPlan, value_hu: float) -> dict[str, float]:
    """Per center, the validation MAE of the constant predictor (``value_hu`` everywhere in the
    head; :mod:`fedaudit.evaluation.reference`) on the slices the per-round validation scores,
    with the same code: the reference line of the training curves."""
    model = ConstantModel(value_hu)
    out = {}
    for c in plan.clients:
        vols = [load_volume(f) for f in c.val]
        out[c.center] = (validate(model, vols, plan.local, device=torch.device("cpu"))["val_mae"]
                         if vols else float("nan"))
    return out


def train_federation(plan: TrainPlan, reference_hu: float | None = None) -> dict[str, Any]:
    """Train (or resume) one scenario; raises if any round did not complete.

    With ``reference_hu`` (the constant predictor's value) ``history.tsv`` gets a column
    ``val_mae_constant``: that predictor's validation MAE per center, the line the federation's
    ``val_mae`` must fall below."""
    out = Path(plan.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    fp = plan.fingerprint()
    model = initial_model(plan)
    names = exchanged_names(model)
    ck = checkpoint.latest(ckpt_dir, fp)
    if ck is not None and ck.round >= plan.rounds:
        start, arrays, history = plan.rounds + 1, ck.arrays, ck.history
        log.info("checkpoint of the final round %d found: nothing left to train", ck.round)
    elif ck is not None:
        start, arrays, history = ck.round + 1, ck.arrays, ck.history
        log.info("resuming %s from the checkpoint of round %d", plan.scenario.name, ck.round)
    else:
        start, arrays, history = 1, get_arrays(model), []
        checkpoint.clear(ckpt_dir)

    def on_round_end(rnd: int, global_arrays: list[np.ndarray], hist: list[dict]) -> None:
        checkpoint.save(ckpt_dir, checkpoint.Checkpoint(rnd, global_arrays, hist, fp))

    strategy = AuditStrategy(
        centers=plan.centers, names=names, initial=arrays,
        aggregation=plan.scenario.aggregation, first_round=start, total_rounds=plan.rounds,
        log_dir=str(out / "server_log"), log_rounds=plan.log_rounds, krum_f=plan.krum_f,
        trim_beta=plan.trim_beta, history=history, on_round_end=on_round_end)
    t0 = time.perf_counter()
    remaining = plan.rounds - start + 1
    if remaining > 0:
        log.info("scenario %s: rounds %d-%d of %d, clients %s, backend %s, aggregation %s%s",
                 plan.scenario.name, start, plan.rounds, plan.rounds, ", ".join(plan.centers),
                 plan.backend, plan.scenario.aggregation,
                 " + SecAgg+" if plan.scenario.secagg else "")
        server_app = make_server_app(plan, strategy, remaining)
        client_app = make_client_app(plan)
        runner = _run_inprocess if plan.backend == "inprocess" else _run_ray
        errors = runner(plan, server_app, client_app)
        if errors or strategy.error or strategy.completed_round != plan.rounds:
            detail = "\n".join(errors) or strategy.error or ""
            raise FederationError(
                f"scenario {plan.scenario.name}: training stopped after round "
                f"{strategy.completed_round} of {plan.rounds}. {detail}".strip())
    seconds = time.perf_counter() - t0
    set_arrays(model, strategy.global_arrays)
    torch.save({"state_dict": model.state_dict(), "base": plan.model_base,
                "scenario": plan.scenario.as_dict(), "rounds": plan.rounds,
                "seed": plan.seed}, out / "model.pt")
    hist = pd.DataFrame(strategy.history)
    hist.insert(0, "scenario", plan.scenario.name)
    if reference_hu is not None:
        hist["val_mae_constant"] = hist["center"].map(constant_validation_mae(plan,
                                                                              reference_hu))
    hist.to_csv(out / "history.tsv", sep="\t", index=False)
    return {"seconds": seconds, "rounds_trained": max(remaining, 0),
            "resumed_from": start - 1, "history": hist}


def load_model(path: str | Path, device: str | torch.device = "cpu") -> UNet2D:
    """The global model a training run wrote (``model.pt``)."""
    try:
        d = torch.load(path, map_location=device, weights_only=False)
        model = UNet2D(base=int(d["base"]))
        model.load_state_dict(d["state_dict"])
    except Exception as err:
        raise ValueError(f"{path}: not a FedAudit model file ({err})") from err
    return model.to(device).eval()
