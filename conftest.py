"""Shared fixtures of every test -- those in ``tests/`` and a plugin's own beside it
(``src/fedaudit/<kind>/<name>/tests/``): the repository root, a tiny-config helper for workflow
tests, and one torch thread per test worker. The shared test helpers (``fl_study``, ``phantoms``)
live in ``tests/``, put on the import path here so a plugin's tests find them too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests marked ``starts_first`` (the tiny pipeline, about 7 of the suite's 15 minutes)
    go to the front; the others keep their order. xdist's load scheduling hands each worker a
    run of consecutive tests in this order, so the longest test starts at once instead of
    after the rest and deciding the suite's wall time."""
    items.sort(key=lambda item: item.get_closest_marker("starts_first") is None)


def snakemake_cmd(*args: str) -> list[str]:
    exe = BIN / "snakemake"
    return [str(exe) if exe.exists() else "snakemake", *args]


def run_snakemake(workdir: Path, *args: str, env: dict | None = None,
                  timeout: int = 900, snakefile: Path | None = None
                  ) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile (or ``snakefile``) with ``workdir`` as working directory
    (outputs go there)."""
    full_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    cmd = snakemake_cmd("--snakefile", str(snakefile or REPO / "Snakefile"), "--directory",
                        str(workdir), *args)
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)


CHECKOUT = ("Snakefile", "workflow", "config", "profiles", "src")


def copy_checkout(dst: Path) -> Path:
    """A copy of the checkout's workflow files (what a user's clone holds) at ``dst``."""
    for name in CHECKOUT:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info"))
        else:
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst / name)
    return dst


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A clean working directory holding a copy of the repo's profiles (the default profile is
    looked up relative to the working directory)."""
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    return tmp_path


@pytest.fixture
def one_torch_thread():
    """One torch thread per xdist worker (CI runs two workers on two cores): the small networks
    in these tests run ~25x slower when two workers each spin two threads on two cores. A test
    module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
