"""Round-level checkpoints: a killed training job resumes from its last completed round.

Clients are seeded per (seed, center, round) and keep no state between rounds, so the global
model after round r is all a resumed run needs to continue exactly as an uninterrupted one.
A checkpoint carries the run's fingerprint (:meth:`TrainPlan.fingerprint`, which includes the
digest of the training code, :mod:`fedaudit.code_digest`); one from other code, another
configuration or older inputs is ignored with a log line, never resumed. Checkpoints hold tensors
and plain values only and are read with ``torch.load(weights_only=True)``: a crafted file cannot
run code on load, it is refused with an error naming it.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedaudit.torch_files import UnsafeFileError, load_torch, save_torch

log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    round: int
    arrays: list[np.ndarray]
    history: list[dict[str, Any]]
    fingerprint: str


def _payload(ckpt: Checkpoint) -> dict[str, Any]:
    """Tensors and plain values only, so the file loads with ``weights_only=True``: the arrays as
    tensors, the history as JSON text (its rows may hold numpy scalars)."""
    return {"round": int(ckpt.round),
            "arrays": [torch.from_numpy(np.ascontiguousarray(a)) for a in ckpt.arrays],
            "history": json.dumps(ckpt.history, default=_plain),
            "fingerprint": ckpt.fingerprint}


def _plain(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save(folder: str | Path, ckpt: Checkpoint, keep: int = 2) -> Path:
    """Write round ``ckpt.round``'s checkpoint, atomic and verified by loading it back; keep the
    ``keep`` newest."""
    folder = Path(folder)
    path = folder / f"round_{ckpt.round:03d}.pt"
    # atomic: a kill or a full disk leaves the previous checkpoint intact and no temporary file
    save_torch(_payload(ckpt), path)
    for old in sorted(folder.glob("round_*.pt"))[:-keep]:
        old.unlink()
    return path


def latest(folder: str | Path, fingerprint: str) -> Checkpoint | None:
    """The newest readable checkpoint of this run, or None. A torn file (a crash while writing)
    or one of another run is skipped with a log line; a file that is not a plain checkpoint (a
    pickle with code in it) is an error."""
    for path in sorted(Path(folder).glob("round_*.pt"), reverse=True):
        try:
            d = load_torch(path)
        except UnsafeFileError:
            raise
        except Exception as err:  # a torn file from a crash: fall back to an older one
            log.warning("ignoring unreadable checkpoint %s (%s)", path, err)
            continue
        if not isinstance(d, dict) or d.get("fingerprint") != fingerprint:
            log.warning("ignoring checkpoint %s: it was written by other training code, another "
                        "configuration or from older input volumes", path)
            continue
        try:
            arrays = [t.numpy() for t in d["arrays"]]
            history = json.loads(d["history"])
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            log.warning("ignoring checkpoint %s: not in this version's format (%s)", path, err)
            continue
        return Checkpoint(int(d["round"]), arrays, history, fingerprint)
    return None


def clear(folder: str | Path) -> None:
    for path in Path(folder).glob("round_*.pt"):
        path.unlink()


def remove(folder: str | Path) -> None:
    """Remove the checkpoint folder (the rounds and the server-log rounds written while
    training) once the run's outputs are published."""
    shutil.rmtree(folder, ignore_errors=True)
