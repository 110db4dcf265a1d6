"""Reading ``.npz`` archives without pickles, with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
