"""Scenario names, references and the combinations config validation must refuse."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO

from fedaudit.config import ConfigError, validate_config
from fedaudit.scenarios import scenarios_from_config


@pytest.fixture
def demo() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_demo_grid_has_the_papers_27_scenarios_with_readable_names(demo) -> None:
    sc = scenarios_from_config(validate_config(demo))
    assert len(sc) == 27
    s = sc["poison-C-g1.0-fedmedian"]
    assert (s.poison_center, s.gamma, s.aggregation, s.secagg) == ("C", 1.0, "fedmedian", False)
    # each poisoned federation is compared with the clean one using the same aggregation
    assert s.reference == "fedmedian"
    assert sc["poison-C-g0.1-fedavg"].reference == "baseline"
    assert sc["secagg"].secagg and sc["secagg"].reference == "baseline"
    assert sc["baseline"].reference is None


def test_only_subsets_and_unknown_names_are_errors(demo) -> None:
    cfg = copy.deepcopy(demo)
    cfg["scenarios"]["only"] = ["baseline", "poison-D-g1.0-fedavg"]
    assert list(scenarios_from_config(validate_config(cfg))) == ["baseline",
                                                                  "poison-D-g1.0-fedavg"]
    cfg["scenarios"]["only"] = ["baseline", "poison-Z-g1.0-fedavg"]
    with pytest.raises(ConfigError, match="unknown scenario.*poison-Z-g1.0-fedavg"):
        validate_config(cfg)


@pytest.mark.parametrize("agg", ["fedmedian", "krum", "trimmed_mean"])
def test_secagg_with_a_robust_rule_is_refused(demo, agg) -> None:
    cfg = copy.deepcopy(demo)
    cfg["scenarios"]["custom"] = {"robust-sa": {"aggregation": agg, "secagg": True}}
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
    cfg["train"]["krum_f"] = 2  # 4 train centers: n > f + 2 fails
    with pytest.raises(ConfigError, match="Krum with f=2 needs more than 4 train centers"):
        validate_config(cfg)
    cfg["train"]["krum_f"] = 1
    assert "krum" in scenarios_from_config(validate_config(cfg))
