"""The threat catalog (fedaudit.catalog): built-in registries, plugin folders, and a toy attack
registered from a test folder that appears in the DAG, the tables and the front page with no
edit outside its folder."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, run_snakemake
from fedaudit.catalog import CatalogError, catalog
from fedaudit.config import ConfigError, load_config, validate_config
from fedaudit.report.verdict import front_page

TOY = Path(__file__).parent / "plugins" / "loss_threshold"


def test_builtin_registries_hold_paper_000s_threats() -> None:
    cat = catalog()
    assert set(cat.attacks) == {"fedmia", "dlg", "trap_weights", "gradinv", "cpl", "idlg",
                                "inverting_gradients", "evasion", "noise_replay",
                                "privacy_audit"}
    assert {a.name: a.view for a in cat.attacks.values()} == {
        "fedmia": "server_log", "dlg": "server_log", "trap_weights": "malicious_server",
        "gradinv": "server_log", "cpl": "server_log", "idlg": "server_log",
        "inverting_gradients": "server_log", "evasion": "client", "noise_replay": "server_log",
        "privacy_audit": "server_log"}
    # paper 003's methods: recipes the gradient-inversion suite runs (DLG has jobs of its own)
    assert {n for n, a in cat.attacks.items() if a.method} == {"dlg", "cpl", "idlg",
                                                               "inverting_gradients"}
    assert set(cat.client_attacks) == {"poisoning"}
    assert set(cat.defenses) == {"secagg", "architecture_check", "weight_audit",
                                 "laplace_noise", "dp_fedavg", "dp_sgd", "group_norm"}
    # DP-SGD changes the local training and the model, not what a client sends
    dp = cat.defenses["dp_sgd"]
    assert (dp.client_mods, dp.local_training, dp.model) == (
        None, ".private:local_training", ".noise:model")
    # DP-SGD's reference changes the model only: the same GroupNorm UNet, without DP
    gn = cat.defenses["group_norm"]
    assert (gn.client_mods, gn.fit_workflow, gn.local_training, gn.model) == (
        None, None, None, ".plugin:model")
    for groups in (1, 4, 8):
        assert cat.model_changes([{"name": "dp_sgd", "groups": groups}]) == \
            cat.model_changes([{"name": "group_norm", "groups": groups}]) == \
            {"norm": "group", "groups": groups}
    assert cat.defenses["secagg"].compatible == ("fedavg",)
    assert set(cat.aggregators) == {"fedavg", "fedmedian", "krum", "trimmed_mean"}
    assert set(cat.servers) == {"honest", "trap_weights"}
    assert set(cat.tables) == {"quality", "poisoning", "membership", "inversion", "trap_weights",
                               "trap_weights_3d", "trap_weights_defenses", "inversion_suite",
                               "inversion_classifier", "privacy_utility", "evasion",
                               "evasion_transfer", "evasion_dp", "runtimes", "noise_replay",
                               "privacy_audit"}
    for spec in cat.attacks.values():
        assert spec.rules.is_file() or spec.method, spec.name


def test_a_scenario_gets_its_one_step_replacing_defense_and_two_are_refused() -> None:
    from fedaudit.scenarios import Scenario

    cat = catalog()
    dp = {"name": "dp_sgd", "noise_multiplier": 1.0}
    hook = cat.defense_hook(Scenario("dpsgd", defenses=({"name": "weight_audit"}, dp)),
                            "local_training")
    assert hook is not None and hook[0] is dp and hook[1].name == "dp_sgd"
    assert cat.defense_hook(Scenario("baseline"), "fit_workflow") is None
    assert cat.defense_hook(Scenario("secagg", defenses=({"name": "secagg"},)),
                            "fit_workflow")[1].name == "secagg"
    both = Scenario("both", defenses=(dp, {"name": "dp_sgd", "noise_multiplier": 2.0}))
    with pytest.raises(ValueError, match=r"scenario 'both': defenses dp_sgd, dp_sgd each "
                                         r"replace the same step \(local_training\)"):
        cat.defense_hook(both, "local_training")


def test_a_plugin_folder_is_loaded_only_where_the_config_names_it() -> None:
    assert "loss_threshold" not in catalog().attacks
    cat = catalog([TOY])
    assert cat.attacks["loss_threshold"].view == "trained_model"
    # built once per process and set of folders: the same object again, another for another set
    assert catalog([TOY]) is cat and catalog([str(TOY)]) is cat and catalog() is catalog()
    assert catalog() is not cat
    assert cat.tables["loss_membership"].package == "fedaudit_plugins.loss_threshold"
    assert "loss_threshold" not in catalog().attacks  # no leak into other studies
    demo = load_config(REPO / "config" / "config.yaml")
    assert "loss_threshold" not in demo["attacks"]
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    with_toy = validate_config({**raw, "plugins": [str(TOY)]})
    # its schema fragment is mounted with its defaults; null scenarios become its default
    assert with_toy["attacks"]["loss_threshold"] == {"enabled": True, "scenarios": ["baseline"],
                                                     "slices": 4}
    bad = copy.deepcopy(raw)
    bad["plugins"] = [str(TOY)]
    bad["attacks"]["loss_threshold"] = {"slices": 0}
    with pytest.raises(ConfigError, match="'attacks.loss_threshold.slices'"):
        validate_config(bad)


def test_a_broken_plugin_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=f"plugin folder {tmp_path}: no plugin.py"):
        catalog([tmp_path])
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    with pytest.raises(ConfigError, match="config key 'plugins': plugin folder .*no plugin.py"):
        validate_config({**raw, "plugins": [str(tmp_path)]})
    (tmp_path / "plugin.py").write_text(
        "from pathlib import Path\nfrom fedaudit.catalog import AttackSpec\n"
        "ATTACK = AttackSpec(name='x', title='x', view='telepathy', folder=Path('.'))\n")
    with pytest.raises(CatalogError, match=f"{tmp_path}: attack 'x' declares view 'telepathy'; "
                       "known views: server_log, malicious_server, client, trained_model"):
        catalog([tmp_path])


def test_a_plugin_registers_its_own_view_and_the_front_page_lists_who_attacks(
        tmp_path: Path) -> None:
    """An attacker's view is a catalog entry like any other: a plugin folder may declare one
    beside the attack that uses it; :meth:`ViewSpec.open` hands over its class; the front page
    says, per view, what the attacker holds and which attacks ran with it."""
    folder = tmp_path / "insider"
    folder.mkdir()
    (folder / "plugin.py").write_text(
        "from pathlib import Path\n"
        "from fedaudit.catalog import AttackSpec, ViewSpec\n"
        "VIEW = ViewSpec(name='insider', title='Hospital insider', holds='one center\\'s "
        "files', opens='.plugin:Files')\n"
        "ATTACK = AttackSpec(name='peek', title='Peek', view='insider', folder=Path('.'))\n"
        "class Files:\n"
        "    def __init__(self, center):\n"
        "        self.center = center\n")
    cat = catalog([folder])
    assert list(cat.views) == ["server_log", "malicious_server", "client", "trained_model",
                               "insider"]
    assert cat.views["insider"].open("A").center == "A"
    assert "insider" not in catalog().views  # one study's view does not leak into another's
    who = cat.attackers(["fedmia", "peek", "evasion", "dlg"])
    assert [(v.name, [a.name for a in used]) for v, used in who] == [
        ("server_log", ["fedmia", "dlg"]), ("client", ["evasion"]), ("insider", ["peek"])]
    page = front_page("Intro.\n\nHow it works.", [], demo=False,
                      attackers=[(v.title, v.holds, [a.title for a in used])
                                 for v, used in who])
    assert "How it works.\n\nThe attackers audited, each with only what it holds:" in page
    assert "- **Hospital insider** (one center's files): Peek." in page
    assert ("- **Honest-but-curious server** (every logged round's global model and what each "
            "client sent back (under SecAgg+ only the masked vectors)): Membership inference "
            "(FedMIA); Gradient inversion (DLG).") in page


@pytest.mark.workflow
def test_a_toy_attack_from_a_test_folder_reaches_dag_tables_and_front_page(
        workdir: Path) -> None:
    shutil.copytree(TOY, workdir / "plugins" / "loss_threshold")
    # the smallest federation the toy can read: two centers of two patients, one member and
    # one held-out patient each (the tiny pipeline test runs the full cohort)
    cfg = {"seed": 4, "seeds": 1, "plugins": ["plugins/loss_threshold"],
           "centers": {"A": {"role": "train", "source": {"type": "demo", "patients": 2}},
                       "B": {"role": "train", "source": {"type": "demo", "patients": 2}}},
           "demo": {"resolution_scale": 6.0},
           "preprocess": {"threads": 1, "n4": {"shrink": 2, "iterations": [10]},
                          "cube": {"size": 32}},
           "train": {"rounds": 1, "model": {"base": 2}, "max_slices_per_volume": 2,
                     "val_max_slices": 2},
           "scenarios": {"unpoisoned": ["baseline"], "poisoning": {"gammas": []}},
           "execution": {"train": {"threads": 1, "device": "cpu"}, "evaluate": {"threads": 1},
                         "attacks": {"threads": 1, "device": "cpu"}},
           # the built-in attacks off: the DAG holds the toy and what it needs (the tiny
           # pipeline test runs them all)
           "attacks": {"fedmia": {"enabled": False},
                       "dlg": {"enabled": False}, "trap_weights": {"enabled": False},
                       "gradinv": {"enabled": False}, "evasion": {"enabled": False},
                       "privacy_audit": {"enabled": False}}}
    (workdir / "c.yaml").write_text(yaml.safe_dump(cfg))
    plan = run_snakemake(workdir, "-n", "--configfile", str(workdir / "c.yaml"))
    assert plan.returncode == 0, plan.stderr[-3000:]
    for job in ("loss_threshold", "table_loss_membership", "front_page"):
        assert f"rule {job}:" in plan.stdout, job
    res = run_snakemake(workdir, "results/report/front_page.rst", "--cores", "2",
                        "--configfile", str(workdir / "c.yaml"))
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(workdir / "results/tables/loss_membership.csv")
    # every patient of both training centers is a candidate; accuracy is a share of them
    assert table.loc[0, "patients"] == 4 and 0.0 <= table.loc[0, "accuracy"] <= 1.0
    assert table.loc[0, "chance"] == 0.5
    scores = pd.read_csv(workdir / "results/attacks/loss_threshold/baseline.csv")
    # the evaluator's truth is the splits' train patients, and nobody else
    train = {(c, p) for c in "AB" for p in json.loads(
        (workdir / f"results/splits/{c}.json").read_text())["train"]}
    assert set(zip(scores.center[scores.member], scores.patient[scores.member],
                   strict=True)) == train
    page = (workdir / "results/report/front_page.rst").read_text()
    assert re.search(r"- \*\*Membership by loss threshold \(toy\)\*\* \([a-z ]+\): baseline: "
                     "accuracy", page)
    # its row in the summary table: who attacks is the toy's own view
    assert "   * - Membership by loss threshold (toy)\n     - User of the deployed model" in page
    # who attacks: the toy's attacker holds the deployed model, and only its attack ran
    assert ("The attackers audited, each with only what it holds:\n\n- **User of the deployed "
            "model** (the final global model, queried at test time): Membership by loss "
            "threshold (toy).\n") in page


def test_a_comparison_is_one_folder_and_checks_what_it_reads() -> None:
    """The privacy-utility comparison is registered from its own folder (its table too), and
    refuses a summary that lacks a column it declares, naming the file and the columns."""
    import pandas as pd

    from fedaudit.catalog import CatalogError

    cat = catalog()
    spec = cat.comparisons["privacy_utility"]
    assert spec.folder.name == "privacy_utility" and spec.rules.is_file()
    assert cat.tables["privacy_utility"].package == "fedaudit.comparisons.privacy_utility"
    quality = pd.DataFrame(columns=["scenario", "center", "n", "mae_mean"])  # no ssim_mean
    with pytest.raises(CatalogError, match=r"results/eval/summary.csv lacks .*ssim_mean"):
        spec.check_inputs({"quality": quality}, {"quality": "results/eval/summary.csv"})
    spec.check_inputs({"quality": quality.assign(ssim_mean=0.0), "fedmia": None})


def test_schema_files_read_the_same_through_libyaml() -> None:
    """The schema files are parsed with libyaml's parser (fedaudit.catalog._read_yaml, for
    speed): the same values as PyYAML's pure-Python safe loader, file by file."""
    from fedaudit.catalog import _read_yaml

    files = [REPO / "workflow/schemas/config.schema.yaml",
             *sorted((REPO / "src/fedaudit").rglob("schema.yaml"))]
    assert len(files) > 5
    for path in files:
        with open(path) as fh:
            assert _read_yaml(path) == yaml.safe_load(fh), path
