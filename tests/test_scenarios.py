"""Scenario names, references and the combinations config validation must refuse."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from fedaudit.config import ConfigError, validate_config
from fedaudit.scenarios import (
    Scenario,
    evaluated,
    membership_control,
    result_settings,
    scenarios_from_config,
)


@pytest.fixture
def demo() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_demo_runs_the_headline_and_the_full_grid_has_the_papers_27(demo) -> None:
    sc = scenarios_from_config(validate_config(demo))
    assert list(sc) == [
        "baseline", "secagg", "fedmedian", "poison-D-g1.0-fedavg", "poison-D-g1.0-fedmedian",
        "laplace-b0.0001", "laplace-b0.01", "dp-z1.0", "memorise",
        # the demo's second training seed (seeds: [42, 43]) repeats the headline ones
        "baseline-seed43", "secagg-seed43", "fedmedian-seed43", "poison-D-g1.0-fedavg-seed43",
        "poison-D-g1.0-fedmedian-seed43", "memorise-seed43"]
    # the membership control (and its replica) is trained, not evaluated
    assert evaluated(sc) == [n for n in sc if not n.startswith("memorise")]
    assert membership_control(sc) == "memorise" and sc["memorise"].reference is None
    full = copy.deepcopy(demo)
    full["scenarios"].update(yaml.safe_load((REPO / "config" / "demo-full.yaml").read_text())
                             ["scenarios"])
    sc = scenarios_from_config(validate_config(full))
    # the grid and the demo's three noise levels, and the second seed's replicas of the
    # unpoisoned three and of center A's γ = 1.0 pair
    assert len([n for n in evaluated(sc) if sc[n].replica_of is None]) == 27 + 3
    assert [n for n in evaluated(sc) if sc[n].replica_of] == [
        "baseline-seed43", "secagg-seed43", "fedmedian-seed43",
        "poison-A-g1.0-fedavg-seed43", "poison-A-g1.0-fedmedian-seed43"]
    s = sc["poison-C-g1.0-fedmedian"]
    assert (s.poison_center, s.gamma, s.aggregation, s.secagg) == ("C", 1.0, "fedmedian", False)
    # each poisoned federation is compared with the clean one using the same aggregation
    assert s.reference == "fedmedian"
    assert sc["poison-C-g0.1-fedavg"].reference == "baseline"
    assert sc["secagg"].secagg and sc["secagg"].reference == "baseline"
    assert sc["baseline"].reference is None


def test_the_constant_predictors_name_is_reserved(demo) -> None:
    cfg = copy.deepcopy(demo)
    cfg["scenarios"]["custom"] = {"constant": {"aggregation": "fedavg"}}
    with pytest.raises(ConfigError, match="'scenarios.custom.constant': the name is reserved"):
        validate_config(cfg)


def test_only_subsets_and_unknown_names_are_errors(demo) -> None:
    cfg = copy.deepcopy(demo)
    cfg["scenarios"]["only"] = ["baseline", "poison-D-g1.0-fedavg"]
    assert list(scenarios_from_config(validate_config(cfg))) == [
        "baseline", "poison-D-g1.0-fedavg", "baseline-seed43", "poison-D-g1.0-fedavg-seed43"]
    cfg["scenarios"]["only"] = ["baseline", "poison-Z-g1.0-fedavg"]
    with pytest.raises(ConfigError, match="unknown scenario.*poison-Z-g1.0-fedavg"):
        validate_config(cfg)


@pytest.mark.parametrize("agg", ["fedmedian", "krum", "trimmed_mean"])
def test_secagg_with_a_robust_rule_is_refused(demo, agg) -> None:
    cfg = copy.deepcopy(demo)
    cfg["scenarios"]["custom"] = {"robust-sa": {"aggregation": agg, "defenses": ["secagg"]}}
    with pytest.raises(ConfigError, match=f"SecAgg\\+ with {agg} is not possible"):
        validate_config(cfg)


def test_poisoning_an_unknown_or_external_center_is_refused(demo) -> None:
    cfg = copy.deepcopy(demo)
    cfg["scenarios"]["poisoning"]["centers"] = ["E"]
    with pytest.raises(ConfigError, match="'E' is not a train center"):
        validate_config(cfg)


def test_krum_needs_enough_clients(demo) -> None:
    cfg = copy.deepcopy(demo)
    cfg["scenarios"]["unpoisoned"] = ["baseline", "krum"]
    cfg["aggregations"] = {"krum": {"f": 1}}  # 4 train centers: n > 2f + 2 fails
    with pytest.raises(ConfigError, match=r"scenario 'krum': aggregation 'krum' needs n > 2f \+ 2 "
                                          r"clients .*n=4, f=1.*aggregations.krum.f"):
        validate_config(cfg)
    cfg["aggregations"]["krum"]["f"] = 0
    assert scenarios_from_config(validate_config(cfg))["krum"].aggregation_params == {"f": 0}


def test_each_scenario_depends_on_exactly_the_settings_it_reads(demo) -> None:
    """A rule's parameters and a defense's settings travel in the scenario (the train rule's
    params): changing Krum's f or SecAgg+'s clipping changes only the scenarios that use them,
    and the study's train settings carry neither."""
    cfg = copy.deepcopy(demo)
    cfg["scenarios"]["unpoisoned"] = ["baseline", "secagg", "krum"]
    cfg["aggregations"] = {"krum": {"f": 0}}
    valid = validate_config(cfg)
    sc = scenarios_from_config(valid)
    for n in ("baseline", "secagg", "krum"):
        settings = result_settings(valid["train"], sc[n])
        assert {"lr", "rounds", "model", "proximal_mu", "lr_schedule"} <= set(settings)
        assert not set(valid["execution"]["train"]) & set(settings)
        assert not {"secagg", "krum_f", "trim_beta"} & set(settings)
    assert sc["secagg"].defense("secagg")["clipping_range"] == 8.0
    # baseline's only defense is the weight audit, which watches every federation by default
    assert sc["baseline"].defenses == ({"name": "weight_audit"},)
    assert sc["krum"].aggregation_params == {"f": 0} and sc["baseline"].aggregation_params == {}
    cfg["defenses"] = {"secagg": {"clipping_range": 4.0}}
    changed = scenarios_from_config(validate_config(cfg))
    assert changed["baseline"].as_dict() == sc["baseline"].as_dict()
    assert changed["krum"].as_dict() == sc["krum"].as_dict()
    assert changed["secagg"].as_dict() != sc["secagg"].as_dict()


def test_a_custom_scenario_is_composed_from_the_catalog(demo) -> None:
    """Scenarios as composition: a rule with its own parameter, a defense, a malicious client
    and the server's behaviour, named in the config and checked against the catalog."""
    cfg = copy.deepcopy(demo)
    cfg["scenarios"]["custom"] = {"krum-poisoned": {
        "aggregation": "trimmed_mean", "aggregation_params": {"beta": 0.1},
        "client_attacks": [{"name": "poisoning", "center": "C", "gamma": 0.5}]}}
    s = scenarios_from_config(validate_config(cfg))["krum-poisoned"]
    assert (s.aggregation, s.aggregation_params, s.server) == ("trimmed_mean", {"beta": 0.1},
                                                              "honest")
    assert (s.poison_center, s.gamma, s.reference) == ("C", 0.5, "baseline")
    for bad, match in (({"aggregation": "mean"}, "'scenarios.custom.x.aggregation'"),
                       ({"aggregation_params": {"beta": 0.7}},
                        "'scenarios.custom.x.aggregation_params': 0.7 is greater"),
                       ({"defenses": ["firewall"]}, "'scenarios.custom.x.defenses.0'"),
                       ({"server": "evil"}, "'scenarios.custom.x.server'"),
                       ({"client_attacks": [{"name": "poisoning", "center": "E", "gamma": 1}]},
                        "'E' is not a train center")):
        cfg["scenarios"]["custom"] = {"x": {"aggregation": "trimmed_mean", **bad}}
        with pytest.raises(ConfigError, match=match):
            validate_config(cfg)


def test_plan_drops_qc_excluded_patients_and_names_an_emptied_center(demo, tmp_path) -> None:
    from fedaudit.federation.plan import plan_from_config

    train = validate_config(demo)["train"]
    splits = {"A": {"train": ["a1", "a2"], "val": ["a3"], "test": ["a4"]},
              "B": {"train": ["b1"], "val": [], "test": []}}
    plan = plan_from_config(train, Scenario("baseline"), splits, tmp_path, tmp_path / "out",
                            seed=1, excluded={("A", "a2"), ("A", "a3")})
    assert plan.client("A").train == (str(tmp_path / "A" / "a1"),)
    assert plan.client("A").val == () and plan.client("B").train == (str(tmp_path / "B" / "b1"),)
    assert plan.local.lr == train["lr"] and plan.local.lr_schedule == "cosine"
    with pytest.raises(ValueError, match="center B has no training patient left after QC "
                                         "excluded b1"):
        plan_from_config(train, Scenario("baseline"), splits, tmp_path, tmp_path / "out", seed=1,
                         excluded={("B", "b1")})


def test_a_scenarios_own_train_settings_override_the_studys(demo, tmp_path) -> None:
    from fedaudit.federation.plan import plan_from_config

    cfg = validate_config(demo)
    sc = scenarios_from_config(cfg)
    memo, base = (result_settings(cfg["train"], sc[n]) for n in ("memorise", "baseline"))
    assert (memo["local_epochs"], memo["max_train_patients"]) == (40, 1)
    assert (base["local_epochs"], base["max_train_patients"]) == (1, None)
    assert memo["model"] == base["model"]  # what the control does not set is the study's
    # nested settings merge key by key: setting augment.enabled keeps rotate_deg
    cfg["scenarios"]["membership_control"]["train"].update(augment={"enabled": True},
                                                           optimizer="sgd", momentum=0.9)
    aug = result_settings(cfg["train"], scenarios_from_config(cfg)["memorise"])["augment"]
    assert aug["enabled"] and aug["rotate_deg"] == cfg["train"]["augment"]["rotate_deg"]
    splits = {"A": {"train": ["p3", "p1", "p2"], "val": ["p4"]},
              "B": {"train": ["q1", "q2"], "val": []}}
    sgd = result_settings(cfg["train"], scenarios_from_config(cfg)["memorise"])
    plan = plan_from_config({**cfg["train"], **sgd}, sc["memorise"], splits, tmp_path,
                            tmp_path / "out", seed=1, excluded={("A", "p1")})
    # the first patient (sorted) after QC: what FedMIA's evaluator counts as the member
    assert [Path(f).name for f in plan.client("A").train] == ["p2"]
    assert [Path(f).name for f in plan.client("B").train] == ["q1"]
    assert (plan.local.optimizer, plan.local.momentum) == ("sgd", 0.9)


def test_the_membership_control_needs_a_free_name(demo) -> None:
    cfg = copy.deepcopy(demo)
    cfg["scenarios"]["membership_control"]["name"] = "baseline"
    with pytest.raises(ConfigError, match="membership_control.name': 'baseline' is already"):
        validate_config(cfg)
    cfg["scenarios"]["membership_control"] = {"enabled": True, "train": {"model": {"base": 4}}}
    with pytest.raises(ConfigError, match="membership_control.train"):
        validate_config(cfg)
