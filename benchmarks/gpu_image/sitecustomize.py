"""The GPU machine's Python, simulated on this one (``benchmarks/gpu_check.sh --dry``): with
``FEDAUDIT_GPU_IMAGE`` naming the image's package list (``benchmarks/gpu_image_packages.txt``)
and ``FEDAUDIT_GPU_CARRIED`` the distributions carried there as wheels, importing a module of
any other installed distribution raises ``ModuleNotFoundError``, as it would there. Python loads
this file at start-up when its folder is on ``PYTHONPATH``; without the variables it does
nothing."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import os
import re
import sys
from pathlib import Path


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _allowed(image: Path, carried: str) -> set[str]:
    names = {_norm(ln) for ln in image.read_text(encoding="utf-8").splitlines()
             if ln.strip() and not ln.startswith("#")}
    return names | {_norm(n) for n in carried.split()} | {"fedaudit"}


def _blocked(allowed: set[str]) -> set[str]:
    return {mod for mod, dists in importlib.metadata.packages_distributions().items()
            if not any(_norm(d) in allowed for d in dists)}


class _Image(importlib.abc.MetaPathFinder):
    """The path finder, blind to the blocked modules: ``import`` raises ModuleNotFoundError
    and ``importlib.util.find_spec`` returns None for them, as where they are not installed
    (code that probes for optional modules must see them absent, not failing)."""

    def __init__(self, finder: object, allowed: set[str]) -> None:
        self.finder, self.allowed, self.blocked = finder, allowed, _blocked(allowed)

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name.partition(".")[0] in self.blocked:
            return None
        return self.finder.find_spec(name, path, target)

    def find_distributions(self, *args: object, **kwargs: object) -> object:
        # importlib.metadata: the image's packages keep their metadata (versions), the
        # blocked ones have none
        return (d for d in self.finder.find_distributions(*args, **kwargs)
                if _norm(d.metadata["Name"] or "") in self.allowed)

    def invalidate_caches(self) -> None:
        self.finder.invalidate_caches()

    def __getattr__(self, name: str) -> object:
        return getattr(self.finder, name)


if os.environ.get("FEDAUDIT_GPU_IMAGE"):
    _allowed_dists = _allowed(Path(os.environ["FEDAUDIT_GPU_IMAGE"]),
                              os.environ.get("FEDAUDIT_GPU_CARRIED", ""))
    sys.meta_path[:] = [_Image(f, _allowed_dists)
                        if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
