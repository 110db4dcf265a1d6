"""The model definition a server sends with a round, and what a client builds from it.

A federation agrees on its model at enrolment: ``{"arch": "unet2d", "base": b}`` (the paper's
BatchNorm UNet), or ``{"arch": "unet2d", "base": b, "norm": "group", "groups": G}`` for the
GroupNorm UNet the DP-SGD federations train (:class:`fedaudit.models.unet.UNet2D`; a definition
without ``norm`` is BatchNorm, so the BatchNorm definitions and their fingerprints are the ones
agreed before the option existed). A server may
send a definition with each round (``FitIns.config["model"]``, canonical JSON) and clients build
what it says, as clients running server-supplied training code do (paper 002's threat model: the
server "provides algorithms to participating clients with initial weights"). Without one, the
agreed model is built. :func:`fingerprint` and :func:`layout` are what a client can check a
received round against (:mod:`fedaudit.defenses.architecture_check`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from torch import nn

from fedaudit.models.front import FrontedModel, LinearFront
from fedaudit.models.unet import GROUPS, NORMS, UNet2D
from fedaudit.models.weights import exchanged_names

ARCHES = ("unet2d",)


def agreed(base: int, norm: str = "batch", groups: int = GROUPS) -> dict[str, Any]:
    """The federation's model as agreed at enrolment: the UNet of width ``base`` with ``norm``
    (``batch``: the paper's; ``group``: GroupNorm with gcd(``groups``, C) groups per layer)."""
    if norm not in NORMS:
        raise ValueError(f"model norm must be one of {NORMS}; got {norm!r}")
    out: dict[str, Any] = {"arch": "unet2d", "base": int(base)}
    if norm != "batch":
        out["norm"] = norm
        if norm == "group":
            out["groups"] = int(groups)
    return out


def to_json(definition: dict[str, Any]) -> str:
    return json.dumps(definition, sort_keys=True, separators=(",", ":"))


def fingerprint(definition: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON definition."""
    return hashlib.sha256(to_json(definition).encode()).hexdigest()


def build(definition: dict[str, Any]) -> nn.Module:
    """The network a definition describes: the UNet, optionally behind a ``front`` block
    (``{"kind": "linear", "d": ..., "k": ...}``)."""
    if definition.get("arch") not in ARCHES:
        raise ValueError(f"model definition {to_json(definition)}: unknown arch "
                         f"{definition.get('arch')!r} (known: {', '.join(ARCHES)})")
    # no "norm": the paper's BatchNorm UNet (module docstring)
    net = UNet2D(base=int(definition["base"]), norm=str(definition.get("norm", "batch")),
                 groups=int(definition.get("groups", GROUPS)))
    front = definition.get("front")
    if front is None:
        return net
    if front.get("kind") != "linear":
        raise ValueError(f"model definition {to_json(definition)}: unknown front block "
                         f"{front.get('kind')!r}")
    return FrontedModel(LinearFront(int(front["d"]), int(front["k"])), net)


def layout(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every exchanged tensor, in wire order."""
    state = model.state_dict()
    return [(n, tuple(state[n].shape)) for n in exchanged_names(model)]
