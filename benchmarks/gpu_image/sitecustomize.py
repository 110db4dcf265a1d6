"""The GPU machine's Python, simulated on this one (``benchmarks/gpu_check.sh --dry``): with
``FEDAUDIT_GPU_IMAGE`` naming the image's package list (``benchmarks/gpu_image_packages.txt``)
and ``FEDAUDIT_GPU_CARRIED`` the distributions carried there as wheels, importing a module of
any other installed distribution raises ``ModuleNotFoundError``, as it would there. Python loads
this file at start-up when its folder is on ``PYTHONPATH``; without the variables it does
nothing."""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import os
import re
import sys
from pathlib import Path


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _blocked(image: Path, carried: str) -> set[str]:
    allowed = {_norm(ln) for ln in image.read_text(encoding="utf-8").splitlines()
               if ln.strip() and not ln.startswith("#")}
    allowed |= {_norm(n) for n in carried.split()} | {"fedaudit"}
    return {mod for mod, dists in importlib.metadata.packages_distributions().items()
            if not any(_norm(d) in allowed for d in dists)}


class _Image(importlib.abc.MetaPathFinder):
    def __init__(self, blocked: set[str]) -> None:
        self.blocked = blocked

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        top = name.partition(".")[0]
        if top in self.blocked:
            raise ModuleNotFoundError(f"No module named {top!r} on the GPU machine (not in its "
                                      "image, not carried as a wheel)", name=top)


if os.environ.get("FEDAUDIT_GPU_IMAGE"):
    sys.meta_path.insert(0, _Image(_blocked(Path(os.environ["FEDAUDIT_GPU_IMAGE"]),
                                            os.environ.get("FEDAUDIT_GPU_CARRIED", ""))))
