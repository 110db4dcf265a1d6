"""The model store: the global model a training run writes (``results/train/<scenario>/model.pt``)
and reads back, without Flower -- evaluation and the test-time attacks load checkpoints with
torch alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fedaudit.models.unet import UNet2D


def save_model(path: str | Path, model: UNet2D, *, base: int, **meta: Any) -> Path:
    """Write ``model``'s weights with its width ``base`` and provenance ``meta`` (scenario,
    rounds, seed)."""
    path = Path(path)
    torch.save({"state_dict": model.state_dict(), "base": int(base), **meta}, path)
    return path


def load_model(path: str | Path, device: str | torch.device = "cpu") -> UNet2D:
    """The global model a training run wrote, in eval mode on ``device``."""
    try:
        d = torch.load(path, map_location=device, weights_only=False)
        model = UNet2D(base=int(d["base"]))
        model.load_state_dict(d["state_dict"])
    except Exception as err:
        raise ValueError(f"{path}: not a FedAudit model file ({err})") from err
    return model.to(device).eval()
