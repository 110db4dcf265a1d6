"""What an attacker holds: the classes behind the views (:mod:`fedaudit.attacks.view_specs`).

An attack's run gets only its view; the ground truth (who trained on what, the true slices) is
the evaluator's and reaches only its scoring step.

- :class:`ServerView` -- the honest-but-curious server (paper 000's threat model): for every
  logged round the global model it sent and what each client sent back (under SecAgg+ the masked
  vectors, :class:`fedaudit.federation.server_log.RoundLog`).
- :class:`ModelView` -- the trained model at test time (membership from losses, evasion).
- :class:`ClientView` -- one client (paper 004's malicious participant): the global model of
  every round it took part in, the final global model, and its own local model of a round
  (the model it received plus the update it computed itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fedaudit.federation.server_log import RoundLog, load_round, read_model, resolve_rounds
from fedaudit.models import definition
from fedaudit.models.store import load_model
from fedaudit.models.unet import UNet2D
from fedaudit.models.weights import exchanged_names, set_arrays


class ServerView:
    """The server log of one scenario (``results/train/<scenario>/server_log``). The network is
    the log's model definition (``model.json``: the DP-SGD federations' GroupNorm UNet) and the
    BatchNorm UNet of width ``model_base`` for a log without one; a definition of another width
    than ``model_base`` is an error."""

    def __init__(self, root: str | Path, model_base: int) -> None:
        self.root = Path(root)
        self.model_base = int(model_base)
        stored = read_model(self.root)
        self.definition = definition.agreed(self.model_base) if stored is None else stored
        if int(self.definition.get("base", -1)) != self.model_base:
            raise ValueError(f"{self.root}/model.json defines {definition.to_json(stored or {})}"
                             f", not a UNet2D(base={self.model_base}): wrong model_base?")

    def network(self) -> UNet2D:
        """A fresh network of the log's architecture (its weights are not the federation's)."""
        return definition.build(self.definition)

    def rounds(self, which: str | int | Sequence[int]) -> list[int]:
        """``last`` | ``all`` | a round | rounds -> the logged round numbers."""
        return resolve_rounds(self.root, which)

    def round(self, rnd: int) -> RoundLog:
        return load_round(self.root, rnd)

    def global_model(self, logged: RoundLog, model: UNet2D | None = None) -> UNet2D:
        """The UNet the server sent at the start of ``logged``'s round (into ``model`` when
        given, to reuse one network over rounds); a wrong width is named."""
        model = model if model is not None else self.network()
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


class ClientView:
    """What one training client holds (catalog view ``client``): its own data (read by the
    attack from its own folders), the global model it received at the start of every logged
    round -- the same arrays the server logged as ``global.npz``, since the server sends one
    model to every client -- the final global model it receives after the last round
    (``model.pt``), and its own local model of a round, ``w_global + Δ`` with the update Δ it
    computed itself."""

    def __init__(self, center: str, server_log: str | Path, final_model: str | Path,
                 model_base: int) -> None:
        self.center = center
        self._server = ServerView(server_log, model_base)
        self._final = ModelView(final_model)

    @property
    def model_base(self) -> int:
        return self._server.model_base

    def last_round(self) -> int:
        return self._server.rounds("last")[0]

    def received(self, rnd: int) -> RoundLog:
        """The round's record; the client reads only its ``global_arrays`` (what it received)
        and its own entry."""
        return self._server.round(rnd)

    def global_model(self, rnd: int) -> UNet2D:
        return self._server.global_model(self._server.round(rnd))

    def final_model(self, device: str | torch.device = "cpu") -> UNet2D:
        return self._final.model(device)

    def local_model(self, logged: RoundLog, update: Sequence[np.ndarray]) -> UNet2D:
        """``w_global + Δ`` of ``logged``'s round; ``update`` in the log's parameter order."""
        names = logged.names
        if len(update) != len(names):
            raise ValueError(f"update of {len(update)} arrays for {len(names)} parameters")
        model = self._server.network()
        arrays = {n: (logged.global_arrays[n] + u).astype(np.float32)
                  for n, u in zip(names, update, strict=True)}
        set_arrays(model, [arrays[n] for n in exchanged_names(model)])
        return model.eval()
