"""Imports follow the layers: a module must not drag in a heavier or higher layer.

Each check imports one module in a fresh interpreter (this process has imported everything by the
time it runs, so ``sys.modules`` here proves nothing) and asserts the forbidden module stayed out.
On failure the message names the import chain that first reached the forbidden module, e.g.
``fedaudit.intensity -> fedaudit.preprocess.resample``, so the offending line is one step away.
Why each pair matters: trainers should not load SimpleITK for a constant, the Snakefile's config
parsing should not load the demo generator, the preprocess env's library code should not need the
plotting stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

# (module imported, module that must not be loaded as a result). Append new rules here.
LAYERS: list[tuple[str, str]] = [
    ("fedaudit.intensity", "SimpleITK"),
    ("fedaudit.config", "fedaudit.data.demo"),
    ("fedaudit.preprocess.qc", "matplotlib"),
    # loading a checkpoint for evaluation needs torch, not the federation stack
    ("fedaudit.evaluation.run", "flwr"),
    ("fedaudit.evaluation", "flwr"),
    # a client runs whatever client attack its scenario names through the catalog; the
    # federation layer never imports an attack
    ("fedaudit.federation.client", "fedaudit.attacks"),
    ("fedaudit.federation.run", "fedaudit.attacks"),
    # the catalog is read while the config is validated: specs only, no torch
    ("fedaudit.catalog", "torch"),
    # the DLG figure reads result files, it does not run the attack
    ("fedaudit.plots.dlg", "torch"),
    # the trap-weight tables run in the report environment (no Flower, no torch)
    ("fedaudit.attacks.trap_weights.report", "flwr"),
    ("fedaudit.attacks.trap_weights.report", "torch"),
    # a model definition is architecture only; defenses reach the clients through the catalog
    ("fedaudit.models.definition", "flwr"),
    ("fedaudit.federation.client", "fedaudit.defenses"),
    # the suite's tables and figure run in the report environment; its steps module is what
    # the figure's rule imports there
    ("fedaudit.attacks.gradinv.report", "torch"),
    ("fedaudit.attacks.gradinv.report", "flwr"),
    ("fedaudit.attacks.gradinv.steps", "torch"),
    ("fedaudit.plots.privacy_utility", "torch"),
    # the evasion tables and figures run in the report environment; its steps module is what
    # the figure rules import there, and its rates are read without torch
    ("fedaudit.attacks.evasion.report", "torch"),
    ("fedaudit.attacks.evasion.steps", "torch"),
    ("fedaudit.attacks.evasion.metrics", "torch"),
    ("fedaudit.plots.evasion", "torch"),
    # the attack itself needs torch alone: Flower only to recompute a client's local model
    ("fedaudit.attacks.evasion.algorithm", "flwr"),
    ("fedaudit.attacks.evasion.run", "flwr"),
    # the noise transform is shared by the client mod and the attacks: numpy only
    ("fedaudit.defenses.update_noise", "torch"),
    ("fedaudit.defenses.update_noise", "flwr"),
    # DP-SGD's ε is computed by the privacy-utility table in the report environment (no torch,
    # no Opacus); only the clients' training imports Opacus
    ("fedaudit.defenses.dp_sgd.budget", "torch"),
    ("fedaudit.defenses.dp_sgd.budget", "opacus"),
    # the deployment backend (processes, TLS) loads only when a job selects it; the app
    # processes it starts import it, and never an attack
    ("fedaudit.federation.run", "fedaudit.federation.deployment"),
    ("fedaudit.federation.deployment", "fedaudit.attacks"),
    # training reads volumes through SimpleITK only when it loads a file: the GPU check runs
    # the federation where SimpleITK is not installed (benchmarks/gpu_check.sh)
    ("fedaudit.federation.run", "SimpleITK"),
    # the runtime table runs in the report environment
    ("fedaudit.report.runtimes", "torch"),
    # the noise replay needs the server log and the clients' noise function: numpy only
    ("fedaudit.attacks.noise_replay.steps", "torch"),
    ("fedaudit.attacks.noise_replay.steps", "flwr"),
    ("fedaudit.attacks.noise_replay.report", "torch"),
    ("fedaudit.defenses.noise_source", "torch"),
]

# Runs in the child: a meta-path finder that sees every import not yet in sys.modules and, at the
# first one of the forbidden package, records which modules (and functions, for imports inside
# functions) were executing -- the chain of imports that led there.
_PROBE = r"""
import json, sys

code, forbidden = sys.argv[1], sys.argv[2]
chain = None


def _hit(name):
    return name == forbidden or name.startswith(forbidden + ".")


class _Spy:
    def find_spec(self, name, path=None, target=None):
        global chain
        if chain is None and _hit(name):
            chain, frame = [], sys._getframe(1)
            while frame is not None:
                mod = frame.f_globals.get("__name__", "?")
                if not mod.startswith(("importlib", "_frozen_importlib")):
                    where = frame.f_code.co_qualname
                    chain.append(mod if where == "<module>" else f"{mod}.{where}()")
                frame = frame.f_back
            chain = [m for m in reversed(chain)
                     if m.split(".")[0] not in ("__main__", "__layer_check__")] + [name]
        return None


sys.meta_path.insert(0, _Spy())
exec(compile(code, "<layer check>", "exec"), {"__name__": "__layer_check__"})
print(json.dumps({"loaded": sorted(m for m in sys.modules if _hit(m)), "chain": chain}))
"""


def _forbidden_loaded(code: str, forbidden: str) -> dict:
    """Run ``code`` in a fresh interpreter; which ``forbidden`` modules it loaded, and how."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)}
    res = subprocess.run([sys.executable, "-c", _PROBE, code, forbidden], capture_output=True,
                         text=True, cwd=REPO, env=env, timeout=300)
    assert res.returncode == 0, f"{code!r} failed in a fresh interpreter:\n{res.stderr[-3000:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def _explain(what: str, forbidden: str, found: dict) -> str:
    via = " -> ".join(found["chain"] or ["?"])
    return (f"{what} loads {forbidden} (first reached via {via}); "
            f"loaded: {', '.join(found['loaded'][:8])}")


@pytest.mark.parametrize(("module", "forbidden"), LAYERS,
                         ids=[f"{m}-!{f}" for m, f in LAYERS])
def test_import_does_not_load(module: str, forbidden: str) -> None:
    found = _forbidden_loaded(f"import {module}", forbidden)
    assert not found["loaded"], _explain(f"import {module}", forbidden, found)


def test_loading_the_shipped_config_does_not_load_the_demo_generator() -> None:
    """Not just the import: validating config/config.yaml and listing its (demo) patients, what
    the Snakefile does on every invocation, needs only the center table."""
    code = ("from fedaudit.config import Study, load_config\n"
            "assert Study(load_config('config/config.yaml')).all_patients()\n")
    found = _forbidden_loaded(code, "fedaudit.data.demo")
    assert not found["loaded"], _explain("loading config/config.yaml", "fedaudit.data.demo", found)
