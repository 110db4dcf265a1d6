"""An attack or a defense family is one folder: take it out of the tree and the rest still
validates its config, plans a study and keeps its layers; put a folder in and its jobs appear
(CONTRIBUTING.md, "Add an attack").

Each case copies the checkout (what a user's clone holds), removes one plugin's folder and runs
the copy's own code: the config check in a fresh interpreter, ``snakemake -n`` on the tiny
study of test_workflow (without the plugin's config section), and the declared-layer check of
test_layers on the copy's modules, which also names any import of the removed folder. And every
plugin's rules file reads only the names the workflow exports for plugins (CONTRIBUTING.md's
table), never a global another plugin's rules define.
"""

from __future__ import annotations

import ast
import builtins
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from test_layers import layer_violations
from test_workflow import TINY

from conftest import REPO, copy_checkout, run_snakemake

pytestmark = pytest.mark.workflow

# plugin -> (its folder, the config sections it owns, rules that must leave the plan with it)
MOVE_OUT = {
    "trap_weights": ("src/fedaudit/attacks/trap_weights", ("attacks", "trap_weights"),
                     ("trap_weights", "table_trap_weights", "figure_trap_weights")),
    "evasion": ("src/fedaudit/attacks/evasion", ("attacks", "evasion"),
                ("evasion", "table_evasion", "table_evasion_dp", "figure_evasion_epsilon")),
    "group_norm": ("src/fedaudit/defenses/group_norm", None, ()),
}
# what every study plans whatever its plugins
CORE_RULES = ("train", "evaluate", "fedmia_measure", "dlg", "gradinv", "table_quality",
              "table_privacy_utility", "front_page", "results_page")


def _validate(checkout: Path, cfg: dict) -> subprocess.CompletedProcess:
    """The copy's own config check (its src first on the path), in a fresh interpreter."""
    code = ("import json, sys\nfrom fedaudit.config import validate_config\n"
            "from fedaudit.scenarios import scenarios_from_config\n"
            "print(sorted(scenarios_from_config(validate_config(json.load(sys.stdin)))))\n")
    env = {**os.environ, "PYTHONPATH": str(checkout / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", code], input=json.dumps(cfg), text=True,
                          capture_output=True, cwd=checkout, env=env, timeout=120)


def _plan(checkout: Path, cfg: dict) -> tuple[subprocess.CompletedProcess, set[str]]:
    path = checkout / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = run_snakemake(checkout, "-n", "--configfile", str(path),
                        snakefile=checkout / "Snakefile")
    return res, {line.split()[1].rstrip(":") for line in res.stdout.splitlines()
                 if line.startswith(("rule ", "localrule "))}


@pytest.mark.parametrize("plugin", sorted(MOVE_OUT))
def test_a_plugin_folder_moves_out_and_the_rest_still_runs(plugin: str, tmp_path: Path) -> None:
    folder, section, its_rules = MOVE_OUT[plugin]
    checkout = copy_checkout(tmp_path / "clone")
    shutil.rmtree(checkout / folder)
    cfg = copy.deepcopy(TINY)
    if section:
        # a config that still names the plugin's section is refused by key, nothing else
        named = _validate(checkout, cfg)
        assert named.returncode != 0 and ".".join(section) in named.stderr, named.stderr[-2000:]
        cfg[section[0]].pop(section[1])
    checked = _validate(checkout, cfg)
    assert checked.returncode == 0, checked.stderr[-3000:]
    plan, rules = _plan(checkout, cfg)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert set(CORE_RULES) <= rules, sorted(set(CORE_RULES) - rules)
    assert not set(its_rules) & rules, sorted(set(its_rules) & rules)
    assert layer_violations(checkout / "src") == []
    if plugin == "group_norm":
        # DP-SGD compares itself with the GroupNorm UNet without DP: asked for, it names what
        # is missing
        cfg["scenarios"]["noise"] = {"dp_sgd": [1.0]}
        missing = _validate(checkout, cfg)
        assert missing.returncode != 0
        assert "names defense 'group_norm', which no loaded plugin provides" in missing.stderr


def test_the_toy_attack_moves_into_the_tree_as_one_folder(tmp_path: Path) -> None:
    """tests/plugins/loss_threshold copied under src/fedaudit/attacks/ is a built-in attack:
    its config section gets its defaults, its jobs and table join the plan, the layers hold."""
    checkout = copy_checkout(tmp_path / "clone")
    shutil.copytree(Path(__file__).parent / "plugins" / "loss_threshold",
                    checkout / "src" / "fedaudit" / "attacks" / "loss_threshold")
    plan, rules = _plan(checkout, copy.deepcopy(TINY))
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert {"loss_threshold", "table_loss_membership", *CORE_RULES} <= rules
    assert layer_violations(checkout / "src") == []


# Snakemake's own names a rules file may use (CONTRIBUTING.md, "`rules.smk`: the jobs"), and
# the names the parser writes into the generated code
SNAKEMAKE_NAMES = {"config", "rules", "workflow", "expand", "report", "directory", "ensure", "temp",
                   "logger", "script", "shell", "run"}


def _exported_names() -> set[str]:
    """The names CONTRIBUTING.md's table documents for plugin rules: each backticked entry of
    the table's first column, ``f(args)`` and ``X[name] = ...`` reduced to the name."""
    text = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
    table = text.split("| name | what |", 1)[1].split("\n\n", 1)[0]
    names = set()
    for row in table.splitlines()[2:]:
        for entry in re.findall(r"`([^`]+)`", row.split("|")[1]):
            names.add(re.match(r"[A-Za-z_][A-Za-z0-9_]*", entry).group(0))
    return names


def _free_names(rules_file: Path) -> dict[str, int]:
    """Names a rules file reads but never binds (not assigned, defined, imported, a parameter
    or a loop variable anywhere in it, not a builtin), from Snakemake's own parse of it."""
    from snakemake.parser import parse
    from snakemake.sourcecache import LocalSourceFile, SourceCache

    with tempfile.TemporaryDirectory() as cache:
        workflow = SimpleNamespace(sourcecache=SourceCache(Path(cache)))
        tree = ast.parse(parse(LocalSourceFile(str(rules_file)), workflow, {})[0])
    bound, used = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                used.setdefault(node.id, node.lineno)
            else:
                bound.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            if not isinstance(node, ast.Lambda):
                bound.add(node.name)
            a = node.args
            bound |= {x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)}
            bound |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
    return {n: line for n, line in used.items()
            if n not in bound and not hasattr(builtins, n)}


def test_plugin_rules_use_only_the_names_the_workflow_exports() -> None:
    exported = _exported_names()
    common = (REPO / "workflow" / "rules" / "common.smk").read_text(encoding="utf-8")
    # every documented name exists in common.smk
    undefined = [n for n in exported
                 if not re.search(rf"^(def {n}\(|{n} = )", common, re.MULTILINE)]
    assert not undefined, f"documented for plugins but not defined in common.smk: {undefined}"
    files = sorted((REPO / "src" / "fedaudit").rglob("rules.smk"))
    files += sorted((REPO / "tests" / "plugins").rglob("rules.smk"))
    assert len(files) >= 9
    foreign = [f"{f.relative_to(REPO)}: {name}" for f in files
               for name in sorted(set(_free_names(f)) - exported - SNAKEMAKE_NAMES)]
    assert not foreign, ("plugin rules use names the workflow does not export for plugins "
                         "(CONTRIBUTING.md's table): " + "; ".join(foreign))


def test_the_name_check_sees_another_plugins_global(tmp_path: Path) -> None:
    rules = tmp_path / "rules.smk"
    rules.write_text("X = 1\n\nrule a:\n    input: lambda wc: [X, GRADINV_SCENARIOS]\n"
                     "    output: 'o'\n    threads: EXECUTION['attacks']['threads']\n"
                     "    shell: 'touch {output}'\n")
    free = _free_names(rules)
    assert "GRADINV_SCENARIOS" in free and "EXECUTION" in free and "X" not in free
    assert "GRADINV_SCENARIOS" not in _exported_names() and "EXECUTION" in _exported_names()
