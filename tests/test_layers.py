"""Imports follow the layers: a module must not drag in a heavier or higher layer.

Two kinds of check. :data:`LAYER_ORDER` declares FedAudit's layers, lowest first; every import of
every module under ``src/fedaudit`` (imports inside functions included: they run too) must stay in
its own layer or go down, and the modules' import graph has no cycle
(:func:`test_every_import_goes_down_the_declared_layers`).

Then the pairs of :data:`LAYERS`: each imports one module in a fresh interpreter (this process has
imported everything by the time it runs, so ``sys.modules`` here proves nothing) and asserts the
forbidden module stayed out. On failure the message names the import chain that first reached
the forbidden module, e.g. ``fedaudit.intensity -> fedaudit.preprocess.resample``, so the
offending line is one step away. Why each pair matters: trainers should not load SimpleITK for a
constant, the Snakefile's config parsing should not load the demo generator, the preprocess env's
library code should not need the plotting stack.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SRC = REPO / "src"
# FedAudit's layers, lowest first (CONTRIBUTING.md, "Layers"): a module imports only from its own
# layer or those before it. A prefix covers a package; the longest prefix that matches decides.
LAYER_ORDER: list[tuple[str, ...]] = [
    # foundations: files, logs, threads and seeds, intensities
    ("fedaudit", "fedaudit.atomic", "fedaudit.archives", "fedaudit.runtime", "fedaudit.logs",
     "fedaudit.torch_files", "fedaudit.io", "fedaudit.intensity", "fedaudit.splits",
     "fedaudit.code_digest"),
    # the threat catalog: specs only, read while the config is validated
    ("fedaudit.catalog",),
    # volumes, preprocessing and network definitions
    ("fedaudit.data", "fedaudit.preprocess", "fedaudit.models"),
    # what a study is: its config and its scenarios
    ("fedaudit.scenarios", "fedaudit.config"),
    # the table framework and the verdict's wording
    ("fedaudit.report",),
    # the clients' defenses (reached by the federation through the catalog, never imported)
    ("fedaudit.defenses",),
    # scoring a model: metrics, references, three-view inference
    ("fedaudit.evaluation",),
    # training: the Flower apps, strategy, clients and backends
    ("fedaudit.federation",),
    # figure helpers shared by every figure
    ("fedaudit.plots",),
    # each attack's folder: its steps, report and figures
    ("fedaudit.attacks",),
    # tables and figures that read several attacks
    ("fedaudit.comparisons",),
]


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for i, group in enumerate(LAYER_ORDER):
        for prefix in group:
            if (module == prefix or module.startswith(prefix + ".")) and (
                    best is None or len(prefix) > best[0]):
                best = (len(prefix), i)
    return None if best is None else best[1]


def _modules(src: Path = SRC) -> dict[str, Path]:
    out = {}
    for f in (src / "fedaudit").rglob("*.py"):
        parts = list(f.relative_to(src).with_suffix("").parts)
        if "tests" in parts:  # a plugin's own tests (not a module; they may import anything)
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(module: str, path: Path, modules: dict[str, Path],
             missing: dict[str, int] | None = None) -> dict[str, int]:
    """The FedAudit modules ``module`` imports (at any depth in its code) -> the first line;
    imports of FedAudit modules that do not exist go to ``missing`` (a removed plugin that
    another module still needs)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}
    missing = {} if missing is None else missing
    # a folder without __init__.py (a namespace package) exists too
    known = set(modules) | {m.rsplit(".", k)[0] for m in modules
                            for k in range(1, m.count(".") + 1)}

    def add(name: str, line: int) -> None:
        while name and name not in modules:  # an imported name that is not a module
            name = name.rpartition(".")[0]
        if name and name != module:
            found.setdefault(name, line)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "fedaudit":
                    if a.name not in known:
                        missing.setdefault(a.name, node.lineno)
                    add(a.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base.split(".")[0] != "fedaudit":
                continue
            if base not in known:
                missing.setdefault(base, node.lineno)
            for a in node.names:
                add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base, node.lineno)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        state[v] = 2
        path.pop()
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def _dormant_imports(src: Path) -> dict[str, set[str]]:
    """Per comparison package, the attack packages its spec ``requires`` (read from its
    ``plugin.py`` without importing it): without one of them the comparison is left out of the
    workflow, so its imports of that attack are declared, not broken."""
    out: dict[str, set[str]] = {}
    for plugin in (src / "fedaudit" / "comparisons").glob("*/plugin.py"):
        for node in ast.walk(ast.parse(plugin.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "requires":
                names = ast.literal_eval(node.value)
                out[f"fedaudit.comparisons.{plugin.parent.name}"] = {
                    f"fedaudit.attacks.{n}" for n in names}
    return out


def layer_violations(src: Path = SRC) -> list[str]:
    """What breaks the declared layers in the tree under ``src``: modules in no layer, imports
    that go up, imports of modules that do not exist (except a comparison's of an attack it
    ``requires``, :func:`_dormant_imports`), one import cycle (empty: none)."""
    modules = _modules(src)
    dormant = _dormant_imports(src)
    out = [f"module in no layer of LAYER_ORDER: {m}" for m in sorted(modules)
           if _layer(m) is None]
    graph = {}
    for module, path in sorted(modules.items()):
        missing: dict[str, int] = {}
        imports = _imports(module, path, modules, missing)
        graph[module] = set(imports)
        where = path.relative_to(src.parent)
        declared = next((attacks for pkg, attacks in dormant.items()
                         if module == pkg or module.startswith(pkg + ".")), set())
        out += [f"{where}:{line}: {module} imports {target}, which does not exist"
                for target, line in missing.items()
                if not any(target == a or target.startswith(a + ".") for a in declared)]
        out += [f"{where}:{line}: {module} (layer {_layer(module)}) imports {target} (layer "
                f"{_layer(target)}), which is higher" for target, line in imports.items()
                if None not in (_layer(module), _layer(target))
                and _layer(target) > _layer(module)]
    # a package's __init__ is run by importing any of its modules; an edge to it is no cycle
    # unless its own code imports back
    cycle = _cycle(graph)
    if cycle:
        out.append("an import cycle: " + " -> ".join(cycle))
    return out


def test_every_import_goes_down_the_declared_layers() -> None:
    problems = layer_violations()
    assert not problems, "the declared layers are broken:\n" + "\n".join(problems)


def test_the_layer_check_sees_an_upward_import_inside_a_function(tmp_path) -> None:
    """The checker itself: an import inside a function counts, relative imports resolve."""
    modules = {"fedaudit.models.x": tmp_path / "x.py", "fedaudit.attacks.dlg.steps":
               tmp_path / "steps.py", "fedaudit.attacks.dlg": tmp_path / "__init__.py"}
    modules["fedaudit.models.x"].write_text(
        "def f():\n    from fedaudit.attacks.dlg.steps import g\n")
    modules["fedaudit.attacks.dlg.steps"].write_text("from . import steps\nfrom .steps import g\n")
    assert _imports("fedaudit.models.x", modules["fedaudit.models.x"], modules) == {
        "fedaudit.attacks.dlg.steps": 2}
    assert _layer("fedaudit.models.x") < _layer("fedaudit.attacks.dlg.steps")
    # an import of a module that is not there (a plugin moved out under a module needing it)
    modules["fedaudit.models.y"] = tmp_path / "y.py"
    modules["fedaudit.models.y"].write_text("from fedaudit.attacks.gone.report import f\n")
    missing: dict[str, int] = {}
    _imports("fedaudit.models.y", modules["fedaudit.models.y"], modules, missing)
    assert missing == {"fedaudit.attacks.gone.report": 1}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_a_comparison_may_miss_only_the_attacks_it_requires(tmp_path) -> None:
    """A comparison left out for want of an attack it ``requires`` may import that attack's
    modules; any other missing import is still a break."""
    src = tmp_path / "src"
    pkg = src / "fedaudit" / "comparisons" / "cmp"
    pkg.mkdir(parents=True)
    (src / "fedaudit" / "__init__.py").write_text("")
    (src / "fedaudit" / "comparisons" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text("X = ComparisonSpec(name='cmp', requires=('gone',))\n")
    (pkg / "report.py").write_text("from fedaudit.attacks.gone.metrics import f\n"
                                   "from fedaudit.attacks.other import g\n")
    assert layer_violations(src) == [
        "src/fedaudit/comparisons/cmp/report.py:2: fedaudit.comparisons.cmp.report imports "
        "fedaudit.attacks.other, which does not exist"]


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
    ("fedaudit.attacks.dlg.figures", "torch"),
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
    ("fedaudit.comparisons.privacy_utility.figures", "torch"),
    # the evasion tables and figures run in the report environment; its steps module is what
    # the figure rules import there, and its rates are read without torch
    ("fedaudit.attacks.evasion.report", "torch"),
    ("fedaudit.comparisons.evasion_dp.report", "torch"),
    ("fedaudit.attacks.evasion.steps", "torch"),
    ("fedaudit.attacks.evasion.metrics", "torch"),
    ("fedaudit.attacks.evasion.figures", "torch"),
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
    ("fedaudit.federation.deployed_app", "fedaudit.attacks"),
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
    # the privacy audit's table and the privacy-utility table that reads it: the report
    # environment (no torch, no Flower)
    ("fedaudit.attacks.privacy_audit.report", "torch"),
    ("fedaudit.attacks.privacy_audit.report", "flwr"),
    # the Snakefile imports the report modules while it parses; scipy.stats there would add ~1 s
    # to every snakemake invocation (each dry run, each cluster job)
    ("fedaudit.report.intervals", "scipy.stats"),
    ("fedaudit.attacks.evasion.report", "scipy.stats"),
]

# Runs in the child: a meta-path finder that sees every import not yet in sys.modules and, at the
# first one of the forbidden package, records which modules (and functions, for imports inside
# functions) were executing -- the chain of imports that led there.
_PROBE = r"""
import json, sys

code, forbidden = sys.argv[1], json.loads(sys.argv[2])
chains = dict.fromkeys(forbidden)


def _hit(name, f):
    return name == f or name.startswith(f + ".")


class _Spy:
    def find_spec(self, name, path=None, target=None):
        for f in forbidden:
            if chains[f] is None and _hit(name, f):
                chain, frame = [], sys._getframe(1)
                while frame is not None:
                    mod = frame.f_globals.get("__name__", "?")
                    if not mod.startswith(("importlib", "_frozen_importlib")):
                        where = frame.f_code.co_qualname
                        chain.append(mod if where == "<module>" else f"{mod}.{where}()")
                    frame = frame.f_back
                chains[f] = [m for m in reversed(chain)
                             if m.split(".")[0] not in ("__main__", "__layer_check__")] + [name]
        return None


sys.meta_path.insert(0, _Spy())
exec(compile(code, "<layer check>", "exec"), {"__name__": "__layer_check__"})
print(json.dumps({f: {"loaded": sorted(m for m in sys.modules if _hit(m, f)),
                      "chain": chains[f]} for f in forbidden}))
"""

# One fresh interpreter per imported module, checking every forbidden module of LAYERS at once
# (a torch-heavy import costs seconds; the answers are cached per test process).
_PROBED: dict[str, dict] = {}


def _forbidden_loaded(code: str, forbidden: list[str]) -> dict[str, dict]:
    """Run ``code`` in a fresh interpreter; per name of ``forbidden``, which of its modules it
    loaded, and how."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)}
    res = subprocess.run([sys.executable, "-c", _PROBE, code, json.dumps(forbidden)],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert res.returncode == 0, f"{code!r} failed in a fresh interpreter:\n{res.stderr[-3000:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def _explain(what: str, forbidden: str, found: dict) -> str:
    via = " -> ".join(found["chain"] or ["?"])
    return (f"{what} loads {forbidden} (first reached via {via}); "
            f"loaded: {', '.join(found['loaded'][:8])}")


# grouped by module, so that one worker tends to get a module's pairs and probes it once
_PAIRS = sorted(LAYERS, key=lambda pair: pair[0])


@pytest.mark.parametrize(("module", "forbidden"), _PAIRS,
                         ids=[f"{m}-!{f}" for m, f in _PAIRS])
def test_import_does_not_load(module: str, forbidden: str) -> None:
    if module not in _PROBED:
        _PROBED[module] = _forbidden_loaded(f"import {module}",
                                            sorted({f for m, f in LAYERS if m == module}))
    found = _PROBED[module][forbidden]
    assert not found["loaded"], _explain(f"import {module}", forbidden, found)


def test_loading_the_shipped_config_does_not_load_the_demo_generator() -> None:
    """Not just the import: validating config/config.yaml and listing its (demo) patients, what
    the Snakefile does on every invocation, needs only the center table."""
    code = ("from fedaudit.config import Study, load_config\n"
            "assert Study(load_config('config/config.yaml')).all_patients()\n")
    found = _forbidden_loaded(code, ["fedaudit.data.demo"])["fedaudit.data.demo"]
    assert not found["loaded"], _explain("loading config/config.yaml", "fedaudit.data.demo", found)
