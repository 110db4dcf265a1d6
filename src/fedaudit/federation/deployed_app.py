"""The Flower App a deployed federation runs (:mod:`fedaudit.federation.deployment`): the App
folder ``flwr run`` packs, the plan each SuperNode is given (its own center's data only), and
the ServerApp and ClientApp the SuperLink's and SuperNodes' app processes load -- the same
:mod:`fedaudit.federation.apps` code as in-process."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedaudit.federation.apps import (
    checkpoint_dir,
    initial_model,
    make_client_app,
    make_strategy,
    resume_point,
    server_main,
)
from fedaudit.federation.plan import ClientData, TrainPlan
from fedaudit.federation.strategy import FederationError
from fedaudit.models.weights import exchanged_names

log = logging.getLogger(__name__)

APP_MODULE = "fedaudit_app"

APP_SOURCE = '''"""One FedAudit run's Flower App (written by fedaudit.federation.deployed_app)."""

from fedaudit.federation import deployed_app

# assignments, not an import: `flwr run` finds the components by reading this file
server_app = deployed_app.server_app
client_app = deployed_app.client_app
'''


def _toml_value(v: str | int | float | bool) -> str:
    # a JSON string (ASCII, escaped) is a valid TOML basic string
    return json.dumps(v) if not isinstance(v, bool) else str(v).lower()


def toml_table(d: dict[str, str | int | float | bool]) -> str:
    return "".join(f"{k} = {_toml_value(v)}\n" for k, v in d.items())

# -- plans and the app ---------------------------------------------------------------------

def load_plan(path: str | Path) -> TrainPlan:
    try:
        return TrainPlan.from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a readable TrainPlan written for this deployment "
                         f"({type(err).__name__}: {err})") from err


def node_plan(plan: TrainPlan, center: str) -> TrainPlan:
    """What ``center``'s SuperNode is given: the plan with every other center's data folders
    blanked (the centers' names stay: the protocol and the client mods count them)."""
    plan.client(center)  # raises KeyError for a center the plan does not train
    # the enrolment weights stay: they are public, and FedAvg and the audit's noise use them
    return replace(plan, enrolment=plan.enrolment_weights(),
                   clients=tuple(c if c.center == center else ClientData(c.center, ())
                                 for c in plan.clients))


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def write_app(folder: Path, run_config: dict[str, str | int]) -> Path:
    """The Flower App folder ``flwr run`` packs: its run config carries ``run_config``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(
        "[project]\n"
        'name = "fedaudit-deployment"\n'
        'version = "1.0.0"\n'
        'description = "One FedAudit federation run on a Flower deployment"\n'
        'license = "MIT"\n\n'
        "[tool.flwr.app]\n"
        'publisher = "fedaudit"\n\n'
        "[tool.flwr.app.components]\n"
        f'serverapp = "{APP_MODULE}:server_app"\n'
        f'clientapp = "{APP_MODULE}:client_app"\n\n'
        "[tool.flwr.app.config]\n" + toml_table(run_config))
    (folder / f"{APP_MODULE}.py").write_text(APP_SOURCE)
    return folder


def _log_to(path: Path | None) -> None:
    """INFO logs of fedaudit in an app process (Flower configures only its own logger): to
    stderr, which Flower captures, and to ``path`` when given."""
    logger = logging.getLogger("fedaudit")
    logger.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path is not None:
        handlers.append(logging.FileHandler(path))
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)


# -- the apps the deployment runs ----------------------------------------------------------

def serve(plan: TrainPlan, grid: Grid, context: Context, result: Path, first_round: int) -> None:
    """The deployed ServerApp's body: the strategy from the run's checkpoint, the same server
    workflow as in-process, and ``result`` (JSON: first and last completed round, error) for
    the job, written whatever happens."""
    _log_to(result.parent / "logs" / "serverapp.log")
    model = initial_model(plan)
    start, arrays, history = resume_point(plan, model)
    record: dict[str, Any] = {"first_round": start, "completed_round": start - 1, "error": None}
    try:
        if start != first_round:
            raise FederationError(
                f"the job resolved round {first_round} as the first to train, the ServerApp "
                f"found round {start} in {checkpoint_dir(plan)}: the checkpoints changed under "
                "the run")
        strategy = make_strategy(plan, exchanged_names(model), start, arrays, history)
        try:
            server_main(plan, strategy, plan.rounds - start + 1)(grid, context)
        finally:
            record["completed_round"] = strategy.completed_round
            record["error"] = strategy.error
        if strategy.completed_round != plan.rounds and record["error"] is None:
            record["error"] = (f"the server workflow ended after round "
                               f"{strategy.completed_round} of {plan.rounds}")
    except BaseException as err:
        record["error"] = record["error"] or "".join(traceback.format_exception(err))
        raise
    finally:
        write_json(result, record)
    if record["error"]:
        raise FederationError(record["error"])


server_app = ServerApp()


@server_app.main()
def _deployed_server(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    serve(load_plan(str(cfg["plan"])), grid, context, Path(str(cfg["result"])),
          int(cfg["first-round"]))


class NodeClientApp(ClientApp):
    """The ClientApp every SuperNode runs: its node config's ``plan`` (the center's own plan,
    :func:`node_plan`) and ``center`` make it :func:`fedaudit.federation.apps.make_client_app`'s
    client of that center, with the scenario's client mods."""

    def __call__(self, message: Message, context: Context) -> Message:
        if not logging.getLogger("fedaudit").handlers:
            _log_to(None)
        plan = load_plan(str(context.node_config["plan"]))
        return make_client_app(plan)(message, context)


client_app = NodeClientApp()
