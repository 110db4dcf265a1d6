"""benchmarks/gpu_check.sh's dry mode simulates the GPU machine's Python: a module of a
distribution that is neither in its image nor carried as a wheel cannot be imported, and the
training, evaluation and attack code imports with what is carried. The check itself runs on a
GPU machine (or with --dry, by hand: ~2 min)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO

BENCH = REPO / "benchmarks"


def _carried(script: str) -> set[str]:
    text = (BENCH / script).read_text(encoding="utf-8")
    m = re.search(r'CARRIED=\(?"?([^")]*)"?\)?', text)
    assert m, script
    return set(m.group(1).split())


def test_both_scripts_carry_the_same_wheels() -> None:
    assert _carried("gpu_check.sh") == _carried("gpu_wheels.sh")
    assert {"monai", "flwr"} <= _carried("gpu_check.sh")
    assert "simpleitk" not in {c.lower() for c in _carried("gpu_check.sh")}


def test_the_simulated_gpu_image_has_what_the_check_imports_and_no_simpleitk() -> None:
    env = {**os.environ,
           "FEDAUDIT_GPU_IMAGE": str(BENCH / "gpu_image_packages.txt"),
           "FEDAUDIT_GPU_CARRIED": " ".join(sorted(_carried("gpu_check.sh"))),
           "PYTHONPATH": f"{BENCH / 'gpu_image'}{os.pathsep}{REPO / 'src'}"}
    code = ("import importlib\n"
            "for m in ('fedaudit.federation.run', 'fedaudit.evaluation.inference',\n"
            "          'fedaudit.attacks.dlg.inversion', 'fedaudit.attacks.fedmia.algorithm',\n"
            "          'fedaudit.attacks.gradient_inversion', 'monai.transforms'):\n"
            "    importlib.import_module(m)\n"
            "import importlib.util\n"
            "assert importlib.util.find_spec('SimpleITK') is None\n"
            "try:\n"
            "    import SimpleITK\n"
            "except ModuleNotFoundError as e:\n"
            "    print('blocked:', e)\n")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "blocked: No module named 'SimpleITK'" in res.stdout
