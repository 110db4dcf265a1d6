"""The `conda:` plumbing: every rule names a pinned env file, and under --use-conda each job runs
inside the env made from its rule's file.

Conda cannot be installed here (no channel is reachable), so a fake `conda` on PATH stands in: it
answers Snakemake's checks, "creates" an env by recording the env file it was given and linking
this test's Python into the prefix, and its `activate` script logs which env each job entered.
"""

from __future__ import annotations

import importlib
import re
import stat
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_snakemake
from fedaudit.catalog import catalog

# script -> env family (a set where one script serves rules of several families: the plugin
# rules' step runner and the table builder)
FAMILY_OF_SCRIPT = {"demo_patient": "data", "demo_template": "data", "data_montage": "data",
                    "train": "train", "evaluate": "train", "eval_summary": "train",
                    "constant_predictor": "train",
                    "step": {"attacks"}, "table": {"report"},
                    "figure_training": "report", "figure_poisoning": "report",
                    "figure_privacy_utility": "report",
                    "figure_sct": "attacks", "front_page": "report",
                    "results_page": "report"}  # others: preprocess


def _rule_files() -> list[Path]:
    """The workflow's rule files and the built-in plugins' (fedaudit.catalog)."""
    return [*(REPO / "workflow" / "rules").glob("*.smk"),
            *(REPO / "src" / "fedaudit").glob("*/*/rules.smk")]


def _blocks() -> list[tuple[Path, str, str]]:
    """(rule file, rule name, rule text) of every rule."""
    out = []
    for smk in _rule_files():
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            out.append((smk, block.split(":", 1)[0].strip(), block))
    return out


def _rule_envs() -> dict[str, Path]:
    """rule name -> env file named in its `conda:` directive (parsed from the rule files)."""
    envs: dict[str, Path] = {}
    for smk, name, block in _blocks():
        consts = dict(re.findall(r'^(\w+) = "(\.\./envs/\w+\.yaml)"', smk.read_text(), re.M))
        m = re.search(r"conda:\s*\n\s*(\S+)", block)
        if not m:
            continue
        value = m.group(1).strip('"')
        named = re.fullmatch(r'CONDA_ENVS\["(\w+)"\]', m.group(1))
        envs[name] = (REPO / "workflow" / "envs" / f"{named.group(1)}.yaml" if named
                      else (REPO / "workflow" / "rules" / consts.get(value, value)).resolve())
    return envs


def _rule_scripts(block: str) -> list[Path]:
    """The Python files a rule runs: its script and, for the plugin step runner and the table
    builder, the module the catalog hands the job to."""
    scripts = REPO / "workflow" / "scripts"
    m = re.search(r'script:\s*\n\s*(.+)', block)
    if not m:
        return []
    ref = m.group(1).strip()
    if ref == "STEP_SCRIPT":
        attack = re.search(r'attack="(\w+)"', block).group(1)
        spec = catalog().attacks[attack]
        module = importlib.import_module(spec.steps, spec.package)
        return [scripts / "step.py", Path(module.__file__)]
    if ref == "TABLE_SCRIPT":
        table = catalog().tables[re.search(r'table="(\w+)"', block).group(1)]
        module = importlib.import_module(table.build.split(":")[0], table.package)
        return [scripts / "table.py", Path(module.__file__)]
    named = re.search(r'(\w+\.py)', ref)
    if named is None:  # a constant naming a workflow script, defined in some rules file
        text = "\n".join(f.read_text() for f in _rule_files())
        named = re.search(rf'^{ref} = str\((.*?)\)$', text, re.M | re.S)
        named = re.search(r'(\w+\.py)', named.group(1)) if named else None
    assert named, f"rule script {ref!r}: no .py file found"
    return [scripts / named.group(1)]


def test_every_job_rule_has_a_pinned_env() -> None:
    envs = _rule_envs()
    aggregate = {"data_all", "preprocess_all", "train_all", "evaluate_all", "attacks_all",
                 "report_all"}
    res_rules = {name for _, name, _ in _blocks()}
    assert res_rules - aggregate == set(envs), "a rule without conda:"
    pyproject = (REPO / "pyproject.toml").read_text()
    for rule, path in envs.items():
        assert path.exists(), f"{rule}: {path} missing"
        spec = yaml.safe_load(path.read_text())
        assert spec["channels"][0] == "conda-forge"
        for dep in spec["dependencies"]:
            if isinstance(dep, dict):
                for pip_dep in dep["pip"]:
                    name, _, version = pip_dep.partition("==")
                    assert version, f"{path.name}: pip package {pip_dep} is not pinned"
                    pinned = re.search(rf'"{re.escape(name)}(\[\w+\])?==([^"]+)"', pyproject)
                    if pinned:
                        assert pinned.group(2) == version, f"{path.name}: {name} differs"
            else:
                assert re.match(r"^[\w.-]+=[\w.]+$", dep), f"{path.name}: {dep} is not pinned"


FAKE_CONDA = """#!{python}
import json, os, sys
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = sys.argv[1:]
if args == ["--version"]:
    print("conda 24.11.3")
elif args[:2] == ["info", "--json"]:
    print(json.dumps({{"conda_prefix": root, "platform": "linux-64", "envs_dirs": []}}))
elif args[:2] == ["config", "--get"]:
    print(json.dumps({{"get": {{"channel_priority": "strict"}}}}))
elif args[:2] == ["env", "create"]:
    opts = {{a.split(" ")[0]: a for a in args}}
    i = args.index("--file"); env_file = args[i + 1].strip('"')
    i = args.index("--prefix"); prefix = args[i + 1].strip('"')
    os.makedirs(os.path.join(prefix, "bin"), exist_ok=True)
    wrapper = os.path.join(prefix, "bin", "python")
    with open(wrapper, "w") as fh:
        fh.write("#!/bin/sh\\n"
                 'echo "$FAKE_CONDA_ENV $*" >> ' + os.path.join(root, "activations.log") + "\\n"
                 'exec {python} "$@"\\n')
    os.chmod(wrapper, 0o755)
    with open(os.path.join(root, "created.log"), "a") as fh:
        fh.write(prefix + " " + env_file + "\\n")
elif args[:1] == ["clean"]:
    pass
else:
    sys.exit("fake conda: unsupported " + " ".join(args))
"""

ACTIVATE = """# sourced by Snakemake as: source <conda_prefix>/bin/activate '<env prefix>'
export FAKE_CONDA_ENV="$1"
export PATH="$1/bin:$PATH"
"""


@pytest.mark.workflow
def test_use_conda_runs_each_rule_in_its_env(workdir: Path) -> None:
    fake = workdir / "fakeconda"
    (fake / "bin").mkdir(parents=True)
    conda = fake / "bin" / "conda"
    conda.write_text(FAKE_CONDA.format(python=sys.executable))
    conda.chmod(conda.stat().st_mode | stat.S_IEXEC)
    (fake / "bin" / "activate").write_text(ACTIVATE)
    cfg = {"seed": 5, "seeds": 1, "demo": {"resolution_scale": 6.0},
           "centers": {"A": {"role": "train", "source": {"type": "demo", "patients": 1}},
                       "E": {"role": "external", "source": {"type": "demo", "patients": 1}}},
           "preprocess": {"threads": 1, "n4": {"shrink": 2, "iterations": [10]},
                          "cube": {"size": 32}},
           "train": {"rounds": 1, "model": {"base": 2}, "max_slices_per_volume": 2,
                     "val_max_slices": 2},
           "scenarios": {"unpoisoned": ["baseline"], "poisoning": {"gammas": []}},
           "execution": {"train": {"threads": 1, "device": "cpu"}, "evaluate": {"threads": 1},
                         "attacks": {"threads": 1, "device": "cpu"}},
           # one train center: FedMIA needs two, DLG runs (briefly) in the attacks env
           "attacks": {"fedmia": {"enabled": False},
                       "dlg": {"iterations": 2, "snapshots": 2, "optimizers": ["adam"],
                               "control_hidden": 4}, "trap_weights": {"enabled": False},
                       # the suite and evasion run in the same env through the same scripts
                       # (step, table) as DLG: they would add minutes and no env
                       "gradinv": {"enabled": False}, "evasion": {"enabled": False},
                       "privacy_audit": {"enabled": False}}}
    (workdir / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {"PATH": f"{fake / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin"}
    res = run_snakemake(workdir, "--cores", "2", "--use-conda", "--conda-prefix",
                        str(workdir / "envs"), "--configfile", str(workdir / "c.yaml"), env=env)
    assert res.returncode == 0, res.stderr[-3000:]

    created = dict(line.split(" ", 1) for line in (fake / "created.log").read_text().splitlines())
    env_of_prefix = {}
    for prefix, env_file in created.items():
        content = yaml.safe_load(Path(env_file).read_text())
        matches = [p.stem for p in (REPO / "workflow" / "envs").glob("*.yaml")
                   if yaml.safe_load(p.read_text()) == content]
        assert len(matches) == 1, f"{env_file} is none of envs/*.yaml"
        env_of_prefix[prefix] = matches[0]
    assert set(env_of_prefix.values()) == {"data", "preprocess", "train", "attacks", "report"}

    runs = (fake / "activations.log").read_text().splitlines()
    scripts_run = []
    for line in runs:
        if ".snakemake/scripts/" not in line:
            continue  # Snakemake's own `python -c` version probe inside the env
        prefix, script = line.split(" ")[0], line.split(" ")[-1]
        name = re.sub(r"^tmp\w+\.", "", Path(script).stem)
        scripts_run.append(name)
        family = FAMILY_OF_SCRIPT.get(name, "preprocess")
        assert env_of_prefix[prefix] in (family if isinstance(family, set) else {family}), line
    # Every rule that ran a job ran it inside its env.
    assert sorted(set(scripts_run)) == sorted(
        {"demo_patient", "demo_template", "data_montage", "register", "head_mask", "n4",
         "finalize", "qc", "qc_table", "splits", "train", "evaluate", "constant_predictor",
         "eval_summary", "step", "table", "figure_training", "front_page", "results_page"})
    assert (workdir / "results/splits/A.json").exists()


# import name -> package name as pinned in envs/*.yaml
PACKAGE_OF = {"SimpleITK": "simpleitk", "skimage": "scikit-image", "sklearn": "scikit-learn",
              "yaml": "pyyaml", "ants": "antspyx"}


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(third-party top-level imports, fedaudit modules imported) of one Python file."""
    import ast

    third, ours = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module
                 and node.level == 0 else [])
        for name in names:
            top = name.split(".")[0]
            if top == "fedaudit":
                ours.add(name)
            elif top not in sys.stdlib_module_names and top != "_common":
                third.add(top)
    return third, ours


def _needed_packages(script: Path) -> set[str]:
    """Third-party packages a rule script needs, following fedaudit imports transitively."""
    src = REPO / "src"
    needed, seen, todo = set(), set(), [script, REPO / "workflow" / "scripts" / "_common.py"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        third, ours = _imports(path)
        needed |= third
        for mod in ours:
            parts = mod.split(".")
            for cand in (src.joinpath(*parts).with_suffix(".py"),
                         src.joinpath(*parts, "__init__.py")):
                if cand.exists():
                    todo.append(cand)
    return {PACKAGE_OF.get(n, n).lower() for n in needed}


def test_each_env_provides_what_its_scripts_import() -> None:
    envs = _rule_envs()
    for _, rule, block in _blocks():
        scripts = _rule_scripts(block)
        if not scripts or rule not in envs:
            continue
        spec = yaml.safe_load(envs[rule].read_text())
        provided = set()
        for dep in spec["dependencies"]:
            items = dep["pip"] if isinstance(dep, dict) else [dep]
            provided |= {re.split(r"[=<>\[]", d)[0].lower() for d in items}
        missing = set().union(*(_needed_packages(f) for f in scripts)) - provided
        assert not missing, f"rule {rule}: {envs[rule].name} lacks {sorted(missing)}"
