"""A client audits the weights of every model it receives against the one before.

Paper 002 proposes, without measuring it, to audit the layers a server sends. Honest federated
training changes the global model a little per round (every client takes small steps from it);
a malicious server that plants trap weights replaces a layer outright (Boenisch et al. 2023,
§V-A: freshly drawn rows) or adds one. The audit computes, per exchanged kernel ``l``, the
relative change from the previously received model::

    r_l = ‖w_l − w_l^prev‖₂ / ‖w_l^prev‖₂

and raises an alarm when ``max_l r_l`` exceeds ``threshold``, when a tensor appears, disappears
or changes shape, or when the first layer carries the trap-weight signature (every bias exactly
zero and more negative than positive weight mass, beyond what chance gives: paper 002 Eq. 5
holding by construction, :func:`.verdict.trap_signature`). Only kernels (tensors of two or
more dimensions) enter the change test: biases and BatchNorm parameters and statistics have
small norms whose relative change is large in honest rounds (a conv bias moved by 1.25 of its
norm in round 3 of the demo), and a trap is planted in a weight matrix.
The first model a client receives has nothing to compare with and is never flagged by the change
test.

:func:`audit_mod` runs it in every training round; what it found travels in the round's fit
metrics, threshold-free (``audit_score`` = ``max_l r_l``, ``audit_flags``: the structural and
signature findings), so the training history records it for every honest round (the false
alarms) and a trap round's capture for the malicious ones (the detections), and
:func:`.verdict.is_alarm` applies the threshold where they are counted. With ``refuse: true``
an alarm also fails the round.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.app.message_type import MessageType
from flwr.common import parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from fedaudit.catalog import fragment_defaults
from fedaudit.defenses.weight_audit.verdict import audit
from fedaudit.models import definition

STATE_ARRAYS = "weight_audit.previous"
STATE_NAMES = "weight_audit.names"
class WeightAuditAlarm(RuntimeError):
    """Raised (with ``refuse: true``) when a received model fails the audit."""


def _named(fitins: Any, agreed: dict[str, Any]) -> dict[str, np.ndarray]:
    sent = fitins.config.get("model")
    defn = agreed if sent is None else json.loads(str(sent))
    arrays = parameters_to_ndarrays(fitins.parameters)
    try:
        names = [n for n, _ in definition.layout(definition.build(defn))]
    except (ValueError, KeyError, TypeError):
        names = []
    if len(names) != len(arrays):  # an unbuildable definition: positions stand in for names
        names = [f"tensor_{i}" for i in range(len(arrays))]
    return dict(zip(names, arrays, strict=True))


def audit_mod(base: int | dict[str, Any], threshold: float, refuse: bool,
              noise_std: float = 0.0) -> Callable[[Message, Context, Callable], Message]:
    """A Flower client mod: audits every training message's model against the previous one
    the node received (kept in the node's ``Context.state``) and adds its verdict to the
    round's fit metrics. ``base``: the enrolled UNet's width, or its definition (the
    scenario's: :meth:`fedaudit.federation.plan.TrainPlan.model_definition`); ``noise_std``:
    the update noise the global model carries (:func:`global_noise_std`)."""
    agreed = definition.agreed(base) if isinstance(base, int) else dict(base)

    def mod(msg: Message, context: Context, call_next: Callable) -> Message:
        content = msg.content
        if not (msg.metadata.message_type == MessageType.TRAIN
                and "fitins.parameters" in content.array_records):
            return call_next(msg, context)
        fitins = compat.recorddict_to_fitins(content, keep_input=True)
        received = _named(fitins, agreed)
        previous = None
        if STATE_ARRAYS in context.state.array_records:
            prev_names = json.loads(str(context.state.config_records[STATE_NAMES]["names"]))
            prev_arrays = context.state.array_records[STATE_ARRAYS].to_numpy_ndarrays()
            previous = dict(zip(prev_names, prev_arrays, strict=True))
        verdict = audit(previous, received, threshold, noise_std)
        context.state.array_records[STATE_ARRAYS] = ArrayRecord(list(received.values()))
        context.state.config_records[STATE_NAMES] = ConfigRecord(
            {"names": json.dumps(list(received))})
        if verdict["alarm"] and refuse:
            raise WeightAuditAlarm(f"round {fitins.config.get('round')}: the client refuses "
                                   f"the server's model (weight audit): {verdict['reason']}")
        reply = call_next(msg, context)
        if not reply.has_error() and "fitres.metrics" in reply.content.config_records:
            metrics = reply.content.config_records["fitres.metrics"]
            # threshold-free, so the threshold can change without re-training anything
            metrics["audit_score"] = float(verdict["score"])
            metrics["audit_flags"] = verdict["flags"]
            metrics["audit_reason"] = verdict["reason"]
        return reply

    return mod


def global_noise_std(plan: Any) -> float:
    """The per-coordinate std of the update noise in each new global model of ``plan``'s
    federation, as every client can compute it from the scenario and the enrolment plan: each
    client adds noise of std σ (DP-FedAvg ``z·C``, Laplace ``√2·b``) and FedAvg averages with
    weights ``w_k``, so the global change carries ``σ·√(Σ w_k²)``; the weights are the
    enrolment plan's (training patients per center,
    :meth:`~fedaudit.federation.plan.TrainPlan.enrolment_weights`).
    0 without update noise; DP-SGD's noise is inside the local steps and is not allowed for."""
    from fedaudit.defenses.update_noise import update_noise_std
    from fedaudit.scenarios import noise_defense, noise_on_update

    entry = noise_defense(plan.scenario.defenses)
    if entry is None or not noise_on_update(str(entry["name"])):
        return 0.0
    sigma = update_noise_std(entry)
    weights = np.asarray(list(plan.enrolment_weights().values()), np.float64)
    return float(sigma * np.sqrt(np.sum((weights / weights.sum()) ** 2)))


def client_mods(plan: Any) -> list[Callable]:
    """The defense's hook (:class:`fedaudit.catalog.DefenseSpec`); its settings are the
    scenario's ``weight_audit`` defense entry."""
    settings = {**fragment_defaults(Path(__file__).parent),
                **(plan.scenario.defense("weight_audit") or {})}
    return [audit_mod(plan.model_definition(), float(settings["threshold"]),
                      bool(settings["refuse"]), global_noise_std(plan))]
