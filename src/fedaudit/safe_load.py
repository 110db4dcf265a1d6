"""Loading torch files without running their code.

``torch.load(weights_only=False)`` unpickles arbitrary objects: a crafted ``model.pt`` or
checkpoint runs whatever its pickle says the moment it is read. FedAudit's files hold tensors and
plain values only (dicts, lists, strings, numbers), which ``weights_only=True`` reads, and it
refuses anything else with an error that names the file.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any


class UnsafeFileError(ValueError):
    """A torch file refused on load: it holds objects other than tensors and plain values."""


def load_torch(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; a refused file raises :class:`UnsafeFileError`
    naming it (a torn or missing file raises torch's own error)."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "refused"
        raise UnsafeFileError(f"{path}: refused: it holds objects other than tensors and plain "
                              f"values, which loading could execute ({first})") from err


class ArchiveError(ValueError):
    """An ``.npz`` archive that is missing or cannot be read; the message names the file."""


def load_npz(path: str | Path) -> dict[str, Any]:
    """Every array of an ``.npz`` archive, read without pickles; a missing or truncated archive
    raises :class:`ArchiveError` naming it (numpy alone says "File is not a zip file")."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ArchiveError(f"{path}: does not exist") from None
    except Exception as err:  # zipfile, numpy and OS errors of a damaged archive
        raise ArchiveError(f"{path}: unreadable archive ({type(err).__name__}: {err}); re-run "
                           "the job that wrote it") from err
