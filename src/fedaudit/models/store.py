"""The model store: the global model a training run writes (``results/train/<scenario>/model.pt``)
and reads back, without Flower -- evaluation and the test-time attacks load checkpoints with
torch alone.

A checkpoint carries the model definition it was trained as (:mod:`fedaudit.models.definition`:
the width and, for the DP-SGD federations' GroupNorm UNet, ``norm`` and ``groups``), so a reader
rebuilds the right architecture without knowing which scenario wrote it. A checkpoint without a
definition (written before it was stored) is the paper's BatchNorm UNet of its ``base``.

The file holds tensors and plain values only; it is written atomically and verified
(:mod:`fedaudit.atomic`) and read with ``weights_only=True``, so a crafted ``model.pt`` is refused
with an error naming it instead of running code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fedaudit.models import definition
from fedaudit.models.unet import UNet2D
from fedaudit.torch_files import load_torch, save_torch


def definition_of(model: UNet2D) -> dict[str, Any]:
    """The enrolment definition of a UNet (:func:`fedaudit.models.definition.agreed`)."""
    return definition.agreed(model.base, model.norm, model.groups)


def save_model(path: str | Path, model: UNet2D, *, base: int, **meta: Any) -> Path:
    """Write ``model``'s weights with its width ``base``, its definition and provenance ``meta``
    (scenario, rounds, seed)."""
    if int(base) != model.base:
        raise ValueError(f"{path}: base {base} given for a UNet of base {model.base}")
    path = Path(path)
    payload = {"state_dict": model.state_dict(), "base": int(base),
               "definition": definition_of(model), **meta}
    return save_torch(payload, path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> UNet2D:
    """The global model a training run wrote, in eval mode on ``device``."""
    d = load_torch(path, map_location=device)  # a refused pickle: its own error, not "format"
    try:
        defn = d["definition"] if "definition" in d else definition.agreed(int(d["base"]))
        model = definition.build(defn)
        model.load_state_dict(d["state_dict"])
    except Exception as err:
        raise ValueError(f"{path}: not a FedAudit model file ({err})") from err
    return model.to(device).eval()
