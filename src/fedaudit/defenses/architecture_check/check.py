"""A client refuses a round whose model is not the one agreed at enrolment.

Paper 002 lists, without measuring them, "model scanning", "auditing linear layers" and "hash
verification of the code" against a server that inserts an imprint layer. This is the client
side of all three for the model: at enrolment the client records the agreed definition's SHA-256
(:func:`fedaudit.models.definition.fingerprint`) and the names and shapes of the exchanged
tensors; every training round's definition (``config["model"]``, the agreed one when absent) and
arrays are compared with them before any training, and a difference raises
:class:`ArchitectureMismatch` naming it. The round then fails on the server with that message.

What it cannot see: weights. A server that keeps the architecture and plants malicious values in
existing layers passes it (:mod:`fedaudit.attacks.trap_weights`' ``stealth`` server).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flwr.app import Context, Message
from flwr.app.message_type import MessageType
from flwr.common import parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from fedaudit.models import definition

Layout = list[tuple[str, tuple[int, ...]]]


class ArchitectureMismatch(RuntimeError):
    """A round's model differs from the enrolled one; the message names the difference."""


def differences(agreed: dict[str, Any], agreed_layout: Layout, received: dict[str, Any],
                shapes: list[tuple[int, ...]]) -> list[str]:
    """What differs between the enrolled model and a round's: the definition's hash, extra,
    missing or reshaped tensors (by name, from the received definition), and arrays that do
    not fit the enrolled layout. Empty when they agree."""
    out = []
    if definition.fingerprint(received) != definition.fingerprint(agreed):
        out.append(f"model definition {definition.to_json(received)} (SHA-256 "
                   f"{definition.fingerprint(received)[:12]}) is not the enrolled "
                   f"{definition.to_json(agreed)} ({definition.fingerprint(agreed)[:12]})")
        try:
            got = dict(definition.layout(definition.build(received)))
        except (ValueError, KeyError, TypeError) as err:
            out.append(f"the received definition cannot be built: {err}")
            got = {}
        want = dict(agreed_layout)
        extra = [f"{n} {list(s)}" for n, s in got.items() if n not in want]
        missing = [n for n in want if got and n not in got]
        reshaped = [f"{n} {list(want[n])} -> {list(s)}" for n, s in got.items()
                    if n in want and want[n] != s]
        for label, items in (("extra tensors", extra), ("missing tensors", missing),
                             ("reshaped tensors", reshaped)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                out.append(f"{label}: {', '.join(items[:5])}{more}")
    want_shapes = [s for _, s in agreed_layout]
    if len(shapes) != len(want_shapes):
        out.append(f"{len(shapes)} arrays received, {len(want_shapes)} enrolled")
    else:
        bad = [f"{n} {list(w)} -> {list(s)}" for (n, w), s
               in zip(agreed_layout, shapes, strict=True) if tuple(w) != tuple(s)]
        if bad:
            out.append(f"arrays of another shape: {', '.join(bad[:5])}")
    return out


def architecture_mod(base: int | dict[str, Any]
                     ) -> Callable[[Message, Context, Callable], Message]:
    """A Flower client mod that checks every training message against the model the client
    enrolled with: ``UNet2D(base)``, or a definition (the scenario's, e.g. DP-SGD's GroupNorm
    UNet: :meth:`fedaudit.federation.plan.TrainPlan.model_definition`)."""
    agreed = definition.agreed(base) if isinstance(base, int) else dict(base)
    agreed_layout = definition.layout(definition.build(agreed))

    def mod(msg: Message, context: Context, call_next: Callable) -> Message:
        content = msg.content
        if (msg.metadata.message_type == MessageType.TRAIN
                and "fitins.parameters" in content.array_records):
            fitins = compat.recorddict_to_fitins(content, keep_input=True)
            sent = fitins.config.get("model")
            received = agreed if sent is None else json.loads(str(sent))
            shapes = [tuple(a.shape) for a in parameters_to_ndarrays(fitins.parameters)]
            found = differences(agreed, agreed_layout, received, shapes)
            if found:
                raise ArchitectureMismatch(
                    f"round {fitins.config.get('round')}: the client refuses the server's model "
                    f"(architecture check): {'; '.join(found)}")
        return call_next(msg, context)

    return mod


def client_mods(plan: Any) -> list[Callable]:
    """The defense's hook (:class:`fedaudit.catalog.DefenseSpec`)."""
    return [architecture_mod(plan.model_definition())]
