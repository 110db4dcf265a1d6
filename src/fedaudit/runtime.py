"""Process-level settings every rule needs: thread counts and seeds."""

from __future__ import annotations

import hashlib
import os


def set_threads(n: int) -> None:
    """Honour a rule's ``threads:`` in every numerical library we use.

    ITK reads ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` when ANTsPy is imported, so the variable is
    set before any such import; SimpleITK is told directly.
    """
    n = max(1, int(n))
    for var in ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)


def derive_seed(seed: int, *keys: object) -> int:
    """A stable 32-bit seed for one purpose, derived from the config's single ``seed``.

    Hashing (not ``hash()``, which Python salts per process) keeps it identical across runs and
    machines, so one config seed drives every random choice in the DAG.
    """
    text = "/".join([str(int(seed)), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
