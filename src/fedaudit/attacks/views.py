"""What an attacker holds, one class per view an attack declares (:data:`fedaudit.catalog.VIEWS`).

An attack's run gets only its view; the ground truth (who trained on what, the true slices) is
the evaluator's and reaches only its scoring step.

- :class:`ServerView` -- the honest-but-curious server (paper 000's threat model): for every
  logged round the global model it sent and what each client sent back (under SecAgg+ the masked
  vectors, :class:`fedaudit.federation.server_log.RoundLog`).
- :class:`ModelView` -- the trained model at test time (membership from losses, evasion).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from fedaudit.federation.server_log import RoundLog, load_round, resolve_rounds
from fedaudit.federation.weights import exchanged_names, set_arrays
from fedaudit.models.store import load_model
from fedaudit.models.unet import UNet2D


class ServerView:
    """The server log of one scenario (``results/train/<scenario>/server_log``)."""

    def __init__(self, root: str | Path, model_base: int) -> None:
        self.root = Path(root)
        self.model_base = int(model_base)

    def rounds(self, which: str | int | Sequence[int]) -> list[int]:
        """``last`` | ``all`` | a round | rounds -> the logged round numbers."""
        return resolve_rounds(self.root, which)

    def round(self, rnd: int) -> RoundLog:
        return load_round(self.root, rnd)

    def global_model(self, logged: RoundLog, model: UNet2D | None = None) -> UNet2D:
        """The UNet the server sent at the start of ``logged``'s round (into ``model`` when
        given, to reuse one network over rounds); a wrong width is named."""
        model = model if model is not None else UNet2D(base=self.model_base)
        names = exchanged_names(model)
        missing = [n for n in names if n not in logged.global_arrays]
        if missing:
            raise ValueError(f"{self.root} round {logged.round} lacks {len(missing)} tensors of "
                             f"a UNet2D(base={self.model_base}), e.g. {missing[0]}: wrong "
                             "model_base?")
        try:
            set_arrays(model, [logged.global_arrays[n] for n in names])
        except ValueError as exc:
            raise ValueError(f"{self.root} round {logged.round} does not fit "
                             f"UNet2D(base={self.model_base}): {exc}; wrong model_base?") from exc
        return model


class ModelView:
    """The final global model of one scenario (``results/train/<scenario>/model.pt``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def model(self, device: str | torch.device = "cpu") -> UNet2D:
        return load_model(self.path, device)
