"""Writes that cannot lie: every result file is written to a temporary name beside its final
path, verified, and only then moved into place (``os.replace``, atomic on one file system).

A writer that fails -- a full disk, a file-size limit, a kill -- leaves neither a published file
nor a temporary one, and its error names the path. Verification catches writers that do not
raise: SimpleITK reports "wrote only 0 of 1048576 bytes" on a full file system and returns, which
without a check published a 0-byte ``mr.nii.gz`` and counted the job a success. Each file kind
has its check: a volume's header and (gzip) length, a torch file loaded back with
``weights_only=True``, a zip archive's CRCs, a text file's byte count.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class WriteError(OSError):
    """A result file that could not be written and verified; the message starts with its path."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def temporary_name(path: Path) -> Path:
    """A hidden name beside ``path`` with the same suffixes (writers choose formats by them)."""
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


@contextmanager
def atomic_path(path: str | os.PathLike[str],
                verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success verify it and move it to ``path``. On any
    failure the temporary file is removed, ``path`` is left as it was (a previous version
    survives) and the error is a :class:`WriteError` naming ``path``."""
    final = Path(path)
    tmp = temporary_name(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if not tmp.is_file():
            raise WriteError(final, "the writer produced no file")
        if verify is not None:
            verify(tmp)
        os.replace(tmp, final)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if not isinstance(err, Exception):
            raise  # KeyboardInterrupt and the like pass unchanged
        if isinstance(err, WriteError):  # a verifier's: name the path the user asked for
            raise WriteError(final, err.problem) from None
        raise WriteError(final, f"cannot write it: {type(err).__name__}: {err}") from err


def check_size(expected: int) -> Callable[[Path], None]:
    """A verifier: the file holds exactly ``expected`` bytes."""
    def verify(tmp: Path) -> None:
        got = tmp.stat().st_size
        if got != expected:
            raise WriteError(tmp, f"wrote {got} of {expected} bytes")
    return verify


def write_bytes(data: bytes, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path, check_size(len(data))) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """A text file (UTF-8), verified by its length."""
    return write_bytes(text.encode("utf-8"), path)


def verify_zip(names: set[str] | None = None) -> Callable[[Path], None]:
    """A verifier for ``.npz`` archives: every member's CRC holds and, with ``names``, the members
    are exactly ``<name>.npy``."""
    def verify(tmp: Path) -> None:
        try:
            with zipfile.ZipFile(tmp) as z:
                bad = z.testzip()
                members = set(z.namelist())
        except (zipfile.BadZipFile, OSError) as err:
            raise WriteError(tmp, f"not a complete archive: {err}") from err
        if bad is not None:
            raise WriteError(tmp, f"member {bad} is corrupt")
        if names is not None and members != {f"{n}.npy" for n in names}:
            raise WriteError(tmp, f"holds {sorted(members)}, expected {sorted(names)}")
    return verify


def save_npz(path: str | os.PathLike[str], compressed: bool = False, **arrays: Any) -> Path:
    """``np.savez`` (or ``savez_compressed``), atomic and verified."""
    import numpy as np

    writer = np.savez_compressed if compressed else np.savez
    with atomic_path(path, verify_zip(set(arrays))) as tmp:
        writer(tmp, **arrays)
    return Path(path)


def write_csv(frame: Any, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """A pandas frame as CSV (``to_csv`` keyword arguments), atomic and verified."""
    return write_text(frame.to_csv(None, **kwargs), path)

