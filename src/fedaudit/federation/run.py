"""Run one scenario's federated training end to end: apps, backend, checkpoints, outputs.

Outputs in ``plan.out_dir``: ``model.pt`` (final global model), ``history.tsv`` (what the
server recorded per round and center: the FedAvg weight, timings and, without a privacy defense,
the training loss, validation MAE and throughput each client reported), ``clients.tsv`` (the
clients' own records, :mod:`fedaudit.federation.client_record`: every center's loss, validation
MAE, throughput and count per round, whatever the defense; the training curves read it),
``server_log/`` (see
:mod:`fedaudit.federation.server_log`; written under ``checkpoints/server_log`` while training
and published when the run ends) and ``checkpoints/`` (kept out of Snakemake's outputs so a
killed job's checkpoints and log rounds survive and the re-run resumes from them; removed once the
outputs are published unless ``execution.train.keep_checkpoints``, so a forced re-run trains anew).

The scenario's composition comes from the catalog (:mod:`fedaudit.catalog`): its aggregation
rule runs in the strategy, its defenses add client mods and may replace the fit workflow, and
its server behaviour may wrap the strategy.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from flwr.app import RecordDict
from flwr.clientapp import ClientApp
from flwr.common import Context
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.server import ServerApp
from flwr.supercore.task_identity import TaskIdentity

from fedaudit.atomic import write_csv
from fedaudit.data.slices import load_volume
from fedaudit.evaluation.reference import ConstantModel
from fedaudit.federation import checkpoint, server_log
from fedaudit.federation.apps import (
    checkpoint_dir,
    initial_model,
    make_client_app,
    make_server_app,
    make_strategy,
    resume_point,
)
from fedaudit.federation.client_record import RECORDS_DIR, read_records
from fedaudit.federation.grid import InProcessGrid
from fedaudit.federation.local import validate
from fedaudit.federation.plan import TrainPlan
from fedaudit.federation.strategy import FederationError
from fedaudit.models.store import save_model
from fedaudit.models.weights import exchanged_names, set_arrays

log = logging.getLogger(__name__)

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")


def publish_server_log(partial: Path, final: Path) -> None:
    """Put the finished run's server log at ``final`` (the train rule's ``directory()``
    output) as hard links of the rounds written under ``checkpoints/`` while training: there
    they survive a killed job that resumes, which a declared output would not (Snakemake
    deletes a job's outputs before re-running it)."""
    if final.exists():
        shutil.rmtree(final)
    if not partial.exists():
        final.mkdir(parents=True)
        return

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another file system: copy instead
            shutil.copy2(src, dst)

    shutil.copytree(partial, final, copy_function=link)


def run_inprocess(plan: TrainPlan, server_app: ServerApp, client_app: ClientApp) -> list[str]:
    return run_on_grid(len(plan.clients), server_app, client_app)


def run_on_grid(num_clients: int, server_app: ServerApp, client_app: ClientApp) -> list[str]:
    """Run ``server_app`` with ``num_clients`` nodes of ``client_app`` on the in-process grid
    (:mod:`fedaudit.federation.grid`); returns the clients' error tracebacks (empty if none)."""
    grid = InProcessGrid(client_app, num_clients)
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
        raise RuntimeError("execution.train.backend 'ray' needs Flower's simulation extra: "
                           "pip install 'flwr[simulation]'") from err
    resources: dict[str, Any] = {"num_cpus": plan.ray_num_cpus, "num_gpus": plan.ray_num_gpus}
    # Ray starts its workers -- where the clients train -- at nice 15, so beside other busy jobs
    # (Snakemake runs several at once) they get a sliver of the CPU: the tiny two-client test
    # federation took 290 s beside two busy cores instead of 16 s alone, and 33 s at nice 0
    # (measured on a 2-core AMD EPYC). A user's own setting wins.
    os.environ.setdefault("RAY_worker_niceness", "0")
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
    ckpt_dir = checkpoint_dir(plan)
    log_dir = ckpt_dir / "server_log"
    model = initial_model(plan)
    start, global_arrays, history = resume_point(plan, model)
    if start > plan.rounds:
        log.info("checkpoint of the final round %d found: nothing left to train", plan.rounds)
    elif start > 1:
        log.info("resuming %s from the checkpoint of round %d", plan.scenario.name, start - 1)
    else:
        checkpoint.clear(ckpt_dir)
        shutil.rmtree(log_dir, ignore_errors=True)  # rounds of another configuration
        shutil.rmtree(out / RECORDS_DIR, ignore_errors=True)  # the clients' records too
    t0 = time.perf_counter()
    remaining = plan.rounds - start + 1
    if remaining > 0:
        log.info("scenario %s: rounds %d-%d of %d, clients %s, backend %s, aggregation %s%s",
                 plan.scenario.name, start, plan.rounds, plan.rounds, ", ".join(plan.centers),
                 plan.backend, plan.scenario.aggregation,
                 "".join(f" + {d}" for d in plan.scenario.defense_names))
        if plan.backend == "deployment":
            # the strategy lives in the deployed ServerApp's process; its final checkpoint
            # is the result (the deployment raises FederationError when a round failed)
            from fedaudit.federation.deployment import run_deployed
            global_arrays, history = run_deployed(plan, start)
        else:
            strategy = make_strategy(plan, exchanged_names(model), start, global_arrays,
                                     history)
            server_app = make_server_app(plan, strategy, remaining)
            client_app = make_client_app(plan)
            runner = run_inprocess if plan.backend == "inprocess" else _run_ray
            errors = runner(plan, server_app, client_app)
            if errors or strategy.error or strategy.completed_round != plan.rounds:
                detail = "\n".join(errors) or strategy.error or ""
                raise FederationError(
                    f"scenario {plan.scenario.name}: training stopped after round "
                    f"{strategy.completed_round} of {plan.rounds}. {detail}".strip())
            global_arrays, history = strategy.global_arrays, strategy.history
    seconds = time.perf_counter() - t0
    set_arrays(model, global_arrays)
    save_model(out / "model.pt", model, base=plan.model_base,
               scenario=plan.scenario.as_dict(), rounds=plan.rounds, seed=plan.seed)
    publish_server_log(log_dir, out / "server_log")
    # the architecture the attacks rebuild (fedaudit.attacks.views.ServerView)
    server_log.write_model(out / "server_log", plan.model_definition())
    # which rounds the log holds, so a reader finds a missing one an error, not a shorter log:
    # an honest server logs every round (or the last); a malicious server's own rounds are not
    # honest rounds and never enter it (fedaudit.attacks.trap_weights), so its log is what it wrote
    logged = (server_log.logged_rounds(out / "server_log") if plan.scenario.server != "honest"
              else list(range(1, plan.rounds + 1)) if plan.log_rounds == "all"
              else [plan.rounds])
    server_log.write_index(out / "server_log", logged)
    hist = pd.DataFrame(history)
    hist.insert(0, "scenario", plan.scenario.name)
    # the clients' own records (what a privacy defense keeps from the server): the training
    # curves read these, the attacks never do
    records = read_records(out / RECORDS_DIR, plan.rounds)
    records.insert(0, "scenario", plan.scenario.name)
    if reference_hu is not None:
        constant = constant_validation_mae(plan, reference_hu)
        records["val_mae_constant"] = records["center"].map(constant)
        if not plan.private_replies:
            hist["val_mae_constant"] = hist["center"].map(constant)
    write_csv(hist, out / "history.tsv", sep="\t", index=False)
    write_csv(records, out / "clients.tsv", sep="\t", index=False)
    if not plan.keep_checkpoints:
        # published: a forced re-run trains anew instead of republishing the final checkpoint
        checkpoint.remove(ckpt_dir)
        log.info("checkpoints removed (execution.train.keep_checkpoints: false)")
    return {"seconds": seconds, "rounds_trained": max(remaining, 0),
            "resumed_from": start - 1, "history": hist, "records": records}
