"""The noise replay (fedaudit.attacks.noise_replay) and the noise source it audits: the server
regenerates simulation noise and gets back each clipped update; it cannot regenerate noise from
the clients' OS entropy. Reference: the closed form -- a regenerated draw leaves exactly
clip(Δ, C) (McMahan et al. 2018, Alg. 1's ClipFn), an independent one leaves Δ plus two noise
draws."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from fl_study import make_study, tiny_plan

from conftest import REPO
from fedaudit.attacks.noise_replay import steps
from fedaudit.attacks.noise_replay.replay import attack_round, replay
from fedaudit.attacks.noise_replay.report import findings, summarise
from fedaudit.catalog import Job
from fedaudit.config import ConfigError, validate_config
from fedaudit.defenses.dp_sgd.private import torch_generator
from fedaudit.defenses.noise_source import noise_seed, numpy_generator
from fedaudit.defenses.update_noise import clip_update, global_norm, perturb_update
from fedaudit.federation.run import train_federation
from fedaudit.federation.server_log import load_round
from fedaudit.scenarios import Scenario

DP = {"name": "dp_fedavg", "clip": 1.0, "noise_multiplier": 1.0, "delta": 1e-5}
LAP = {"name": "laplace_noise", "scale": 0.01}


def _update(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.05, (64, 32)).astype(np.float32),
            rng.normal(0, 0.05, (5000,)).astype(np.float32)]


@pytest.mark.parametrize("defense", [DP, LAP], ids=["dp_fedavg", "laplace"])
def test_replay_recovers_simulation_noise_and_not_os_entropy(defense) -> None:
    clean = _update()
    truth = clip_update(clean, DP["clip"]) if defense is DP else clean
    for source in ("simulation", "os_entropy"):
        d = {**defense, "noise_source": source}
        sent = perturb_update(clean, d, numpy_generator(d, noise_seed(42, d["name"], "A", 35)))
        got = replay(sent, d, 42, "A", 35)
        assert got["powered"]
        if source == "simulation":
            assert got["recovered"] and abs(got["removed_share"] - 1) < 5 * got["removed_sd"]
            # the residual is the clipped update itself (float32 rounding of the sent noise)
            assert got["residual_norm"] == pytest.approx(global_norm(truth), rel=1e-4)
        else:
            assert not got["recovered"] and abs(got["removed_share"]) < 5 * got["removed_sd"]
            # what is left is the update plus two independent noise draws
            assert got["residual_norm"] > 1.3 * got["noise_norm_expected"]


def test_the_control_recovers_the_clipped_update_whatever_the_source() -> None:
    sent = perturb_update(_update(1), {**DP, "noise_source": "os_entropy"},
                          numpy_generator({**DP}, 0))
    rows = attack_round({"A": {"w": sent[0], "b": sent[1]}}, ["w", "b"],
                        {"A": "update_A.npz"}, {**DP, "noise_source": "os_entropy"}, 42, 35)
    (row,) = rows
    assert not row["recovered"] and row["control_recovered"]
    assert row["control_cosine"] > 1 - 1e-6 and row["control_norm_ratio"] == pytest.approx(1, 1e-5)
    # an aggregate-only log (SecAgg+) is not attacked, and says why
    (agg,) = attack_round({"A": {"w": sent[0], "b": sent[1]}}, ["w", "b"],
                          {"A": "update_aggregate.npz"}, DP, 42, 35)
    assert not agg["attacked"] and "aggregate" in agg["why"]


def test_os_entropy_generators_differ_every_time_and_simulation_ones_repeat() -> None:
    import torch

    sim = {**DP, "noise_source": "simulation"}
    assert np.array_equal(numpy_generator(sim, 7).normal(size=8),
                          numpy_generator(sim, 7).normal(size=8))
    fresh = {**DP, "noise_source": "os_entropy"}
    assert not np.array_equal(numpy_generator(fresh, 7).normal(size=8),
                              numpy_generator(fresh, 7).normal(size=8))
    # an entry without the key gets the secure source, never the seeded one
    assert not np.array_equal(numpy_generator(DP, 7).normal(size=8),
                              np.random.default_rng(7).normal(size=8))
    a, b = (torch.normal(0, 1, (4096,), generator=torch_generator("cpu", None))
            for _ in range(2))
    assert not torch.equal(a, b)
    # fresh MT19937 state still draws a standard normal
    assert abs(float(a.mean())) < 5 / 64 and abs(float(a.std()) - 1) < 0.05
    assert torch.equal(torch.rand(3, generator=torch_generator("cpu", 5)),
                       torch.rand(3, generator=torch.Generator().manual_seed(5)))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    return make_study(tmp_path_factory.mktemp("study"))


@pytest.mark.parametrize("source", ["simulation", "os_entropy"])
def test_the_replay_attack_on_a_real_federations_log(study, tmp_path, source) -> None:
    """The positive control in the audited setting (a Flower round of DP-FedAvg whose clip is
    far below the update norms) and the audited default."""
    defense = {**DP, "clip": 0.01, "noise_multiplier": 2.0, "noise_source": source}
    plan = tiny_plan(study, tmp_path, Scenario("noisy", defenses=(defense,)), rounds=1)
    train_federation(plan)
    # the step takes a job object (fedaudit.catalog.Job), built here without Snakemake
    job = Job(rule="noise_replay",
              input=SimpleNamespace(server_log=str(tmp_path / "server_log")),
              params=SimpleNamespace(defenses=[defense], rounds="all", seed=plan.seed),
              wildcards=SimpleNamespace(scenario="noisy"),
              output=SimpleNamespace(table=str(tmp_path / "replay.csv")))
    import logging

    steps.attack(job, logging.getLogger("test"))
    rows = pd.read_csv(tmp_path / "replay.csv")
    assert set(rows["center"]) == set(load_round(tmp_path / "server_log", 1).updates)
    assert rows["control_recovered"].all()
    if source == "simulation":
        # every clipped update back, at norm exactly C
        assert rows["recovered"].all()
        np.testing.assert_allclose(rows["residual_norm"], 0.01, rtol=1e-3)
    else:
        assert not rows["recovered"].any()
        assert (rows["residual_norm"] > 100 * 0.01).all()
    (finding,) = findings(summarise(rows), {})
    assert finding.level == ("high" if source == "simulation" else "not detected")
    if source != "simulation":
        assert "control" in finding.power


def test_the_replay_attacks_the_update_noise_grid_and_refuses_a_plain_scenario() -> None:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    valid = validate_config(copy.deepcopy(cfg))
    assert valid["attacks"]["noise_replay"]["scenarios"] == [
        "laplace-b0.0001", "laplace-b0.01", "dp-z1.0"]
    cfg.setdefault("attacks", {})["noise_replay"] = {"scenarios": ["baseline"]}
    with pytest.raises(ConfigError, match="attacks.noise_replay.scenarios.*baseline"):
        validate_config(cfg)


def test_the_malicious_server_defense_line_names_where_a_defense_missed() -> None:
    """Under DP noise the weight audit discounts what the noise explains: a trap the noise
    hides is a miss, and the front page names the scenario it happened in."""
    from fedaudit.attacks.trap_weights.report import defense_finding

    data = pd.DataFrame([
        {"scenario": s, "server": "stealth", "defense": "weight_audit", "detected": d,
         "alarms": int(d), "clients": 4}
        for s, d in (("baseline", True), ("secagg", True), ("dp-z1.0", False))]
        + [{"scenario": "all", "server": "honest", "defense": "weight_audit",
            "detected": False, "alarms": 0, "clients": 1160}])
    (line,) = defense_finding(data)
    assert "weight audit vs stealth: detected in 2/3 scenario(s)" in line.sentence
    assert "missed: stealth server by the weight audit (dp-z1.0)" in line.sentence
    assert "0 false alarm(s) over 1160 honest client-rounds" in line.sentence


def test_verdict_lines_name_a_simulation_noise_scenario() -> None:
    """Under noise_source: simulation every verdict line about a noised scenario says what its
    noise is worth against the server (FedMIA's reads the list from the config)."""
    from fedaudit.attacks.fedmia.report import settings as fedmia_settings

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert fedmia_settings(validate_config(copy.deepcopy(cfg)))["simulation"] == []
    cfg["noise_source"] = "simulation"
    sim = fedmia_settings(validate_config(cfg))["simulation"]
    assert sim == ["laplace-b0.0001", "laplace-b0.01", "dp-z1.0"]
