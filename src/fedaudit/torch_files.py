"""Torch files (models, checkpoints): written atomically and verified, read without running code.

``torch.load(weights_only=False)`` unpickles arbitrary objects: a crafted ``model.pt`` or
checkpoint runs whatever its pickle says the moment it is read. FedAudit's files hold tensors and
plain values only (dicts, lists, strings, numbers), which ``weights_only=True`` reads, and it
refuses anything else with an error that names the file.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from fedaudit.atomic import WriteError, atomic_path


class UnsafeFileError(ValueError):
    """A torch file refused on load: it holds objects other than tensors and plain values."""


def load_torch(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; a refused file raises :class:`UnsafeFileError`
    naming it (a torn or missing file raises torch's own error)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "refused"
        raise UnsafeFileError(f"{path}: refused: it holds objects other than tensors and plain "
                              f"values, which loading could execute ({first})") from err


def save_torch(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save``, atomic and verified by loading the file back with ``weights_only=True``
    (:func:`load_torch`): what is published is readable the safe way, and
    holds the same keys (and list lengths) as what was written."""
    def verify(tmp: Path) -> None:
        back = load_torch(tmp)
        if _shape_of(back) != _shape_of(obj):
            raise WriteError(tmp, "the file read back differs from what was written")

    with atomic_path(path, verify) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def _shape_of(obj: Any) -> Any:
    """Keys and lengths, recursively: what a verifier compares cheaply."""
    if isinstance(obj, dict):
        return {k: _shape_of(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return len(obj)
    return type(obj).__name__
