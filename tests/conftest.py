"""Shared fixtures: the repository root and a tiny-config helper for workflow tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake_cmd(*args: str) -> list[str]:
    exe = BIN / "snakemake"
    return [str(exe) if exe.exists() else "snakemake", *args]


def run_snakemake(workdir: Path, *args: str, env: dict | None = None,
                  timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile with ``workdir`` as working directory (outputs go there)."""
    full_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    cmd = snakemake_cmd("--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args)
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A clean working directory holding a copy of the repo's profiles (the default profile is
    looked up relative to the working directory)."""
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    return tmp_path
