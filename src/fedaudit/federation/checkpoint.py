"""Round-level checkpoints: a killed training job resumes from its last completed round.

Clients are seeded per (seed, center, round) and keep no state between rounds, so the global
model after round r is all a resumed run needs to continue exactly as an uninterrupted one.
A checkpoint carries the run's fingerprint (:meth:`TrainPlan.fingerprint`); one from another
configuration or from older inputs is ignored, never resumed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    round: int
    arrays: list[np.ndarray]
    history: list[dict[str, Any]]
    fingerprint: str


def save(folder: str | Path, ckpt: Checkpoint, keep: int = 2) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"round_{ckpt.round:03d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({"round": ckpt.round, "arrays": ckpt.arrays, "history": ckpt.history,
                "fingerprint": ckpt.fingerprint}, tmp)
    tmp.replace(path)  # atomic: a kill leaves the previous checkpoint intact
    for old in sorted(folder.glob("round_*.pt"))[:-keep]:
        old.unlink()
    return path


def latest(folder: str | Path, fingerprint: str) -> Checkpoint | None:
    """The newest readable checkpoint of this run, or None."""
    for path in sorted(Path(folder).glob("round_*.pt"), reverse=True):
        try:
            d = torch.load(path, weights_only=False)
        except Exception as err:  # a torn file from a crash: fall back to an older one
            log.warning("ignoring unreadable checkpoint %s (%s)", path, err)
            continue
        if d.get("fingerprint") != fingerprint:
            log.warning("ignoring checkpoint %s: it belongs to another configuration or to "
                        "older input volumes", path)
            continue
        return Checkpoint(int(d["round"]), list(d["arrays"]), list(d["history"]), fingerprint)
    return None


def clear(folder: str | Path) -> None:
    for path in Path(folder).glob("round_*.pt"):
        path.unlink()
