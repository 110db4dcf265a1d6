"""The privacy audit in a federation: canary clients through a tiny trained federation's own
client mods (the rule step, on its server log), the bug suite planted in the clients' noise code,
the table and the verdict lines.

References: the accountant's one-round ε (``dp-accounting``'s RDP accountant) for the claim;
the closed-form ceiling for what the control must reach; a correct mechanism's exact ε (μ-GDP)
that Andrew et al.'s estimate must approach.
"""

from __future__ import annotations

import copy
import logging
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from fl_study import make_study, tiny_plan

from conftest import REPO
from fedaudit.attacks.privacy_audit import steps
from fedaudit.attacks.privacy_audit.canaries import CONSISTENT, NO_CLAIM, VIOLATED
from fedaudit.attacks.privacy_audit.federation import (
    canary_norm,
    decode_tensor,
    noise_energy,
    run_canaries,
)
from fedaudit.attacks.privacy_audit.gaussian import gdp_epsilon
from fedaudit.attacks.privacy_audit.one_run import ceiling
from fedaudit.attacks.privacy_audit.report import findings, summarise
from fedaudit.catalog import Job
from fedaudit.config import ConfigError, validate_config
from fedaudit.defenses import noise_mod
from fedaudit.defenses.dp_fedavg import noise as dp_noise
from fedaudit.defenses.dp_fedavg.budget import epsilon
from fedaudit.defenses.update_noise import clip_and_noise, clip_update, perturb_update
from fedaudit.federation.run import train_federation
from fedaudit.federation.server_log import load_round
from fedaudit.scenarios import Scenario

# z = 3 for one round claims ε ≈ 1.39 at δ = 1e-5; 100 canaries certify up to 2.91 (measured:
# the correct clients 0-0.2, each bug 2.91)
DP = {"name": "dp_fedavg", "clip": 1.0, "noise_multiplier": 3.0, "delta": 1e-5}
M = 100


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory):
    """One round of a tiny DP-FedAvg federation: its server log is the canaries' input."""
    root = tmp_path_factory.mktemp("privacy_audit")
    plan = tiny_plan(make_study(root / "study"), root / "run",
                     Scenario("dp", defenses=(DP,)), rounds=1)
    train_federation(plan)
    return root / "run", plan


def _audit(federation, tmp_path, scenario: Scenario, m: int = M) -> pd.DataFrame:
    run, plan = federation
    job = Job(rule="privacy_audit", input=SimpleNamespace(server_log=str(run / "server_log")),
              params=SimpleNamespace(scenario=scenario.as_dict(), rounds=1, canaries=m,
                                     unclaimed_canaries=m, norm_factor=10.0, delta=1e-5,
                                     seed=plan.seed, plugins=[]),
              wildcards=SimpleNamespace(scenario=scenario.name),
              output=SimpleNamespace(table=str(tmp_path / f"{scenario.name}.csv")))
    steps.attack(job, logging.getLogger("test"))
    return pd.read_csv(tmp_path / f"{scenario.name}.csv")


def _no_noise(arrays, entry, rng):
    return [a.astype(np.float32) for a in clip_update(arrays, float(entry["clip"]))]


def _clip_x100(arrays, entry, rng):
    # the clip raised a hundredfold, the noise still calibrated to the C the accountant knows
    wide = {**entry, "clip": 100 * float(entry["clip"]),
            "noise_multiplier": float(entry["noise_multiplier"]) / 100}
    return clip_and_noise(arrays, wide, "clip", rng)


# clipping off is in the mechanism-level suite (test_privacy_audit.py); here the clip ×100
BUGS = {"noise off": (dp_noise, "perturb", _no_noise),
        "clip x100": (dp_noise, "perturb", _clip_x100),
        # the client seeds its noise from what the server can derive, whatever the config says
        "seeded noise": (noise_mod, "numpy_generator",
                         lambda defense, seed: np.random.default_rng(seed))}


def test_the_correct_clients_are_consistent_and_every_planted_bug_is_flagged(
        federation, tmp_path, monkeypatch) -> None:
    """The bug suite in the clients' own code, on a real federation's Flower client stack: the
    accountant is told the correct DP-FedAvg (z = 3, C = 1: one round claims ε ≈ 1.39, which
    100 canaries can contradict up to 2.91)."""
    claim = epsilon(3.0, 1, 1e-5)
    scenario = Scenario("dp", defenses=(DP,))
    rows = _audit(federation, tmp_path, scenario)
    assert len(rows) == M and rows["epsilon_claimed"].iloc[0] == pytest.approx(claim)
    assert rows["canary_norm"].iloc[0] == 10.0 and rows["inclusion_source"].iloc[0] == \
        "os_entropy"
    (good,) = summarise(rows).to_dict("records")
    assert good["status"] == CONSISTENT and good["epsilon_lower_bound"] < claim
    # the federation's own clients (trained with the correct code) sent their noise
    assert good["clients_checked"] == 3 and good["clients_without_noise"] == 0
    for name, (module, attr, bug) in BUGS.items():
        with monkeypatch.context() as patch:
            patch.setattr(module, attr, bug)
            (row,) = summarise(_audit(federation, tmp_path, scenario)).to_dict("records")
        assert row["status"] == VIOLATED, name
        assert row["epsilon_lower_bound"] > 1.5 * claim, (name, row["epsilon_lower_bound"])
        if name == "seeded noise":
            assert row["attack"] == "replay"  # the server subtracts what it regenerates


def test_the_control_reaches_the_ceiling_and_laplace_is_measured(federation, tmp_path) -> None:
    """Without noise every guess is right (the bound is the ceiling for m); Laplace claims no
    ε; its canary is the size of the clients' real updates."""
    run, _ = federation
    control = _audit(federation, tmp_path, Scenario("baseline"), m=100)
    lap = _audit(federation, tmp_path, Scenario("lap", defenses=(
        {"name": "laplace_noise", "scale": 1e-3},)), m=100)
    data = summarise(pd.concat([control, lap], ignore_index=True))
    ctl = data.set_index("scenario").loc["baseline"]
    assert ctl["correct"] == ctl["guesses"] and ctl["status"] == NO_CLAIM
    assert ctl["epsilon_lower_bound"] == pytest.approx(
        ceiling(100, int(ctl["guesses"]), 1e-5, 0.975))
    # the canary is the size of the clients' updates in the log, Laplace's noise energy
    # (2b² per coordinate) removed
    logged = load_round(run / "server_log", 1)
    norms = [math.sqrt(sum(float(np.sum(np.square(logged.updates[c][n].astype(np.float64))))
                           for n in logged.names) - lap["parameters"].iloc[0] * 2e-6)
             for c in logged.updates]
    assert lap["canary_norm"].iloc[0] == pytest.approx(float(np.median(norms)), rel=1e-6)
    assert data.set_index("scenario").loc["lap", "status"] == NO_CLAIM


def test_the_estimate_approaches_the_exact_epsilon_of_a_correct_mechanism() -> None:
    """Andrew et al.'s estimate on the canary path (the real noise mod, OS entropy) comes near
    the exact one-round ε of the Gaussian mechanism (μ = 1/z = 1), an independent closed form;
    400 canaries' fitted μ has a standard error of about 0.1."""
    arrays = [np.zeros((8, 8), np.float32), np.zeros(500, np.float32)]
    entry = {**DP, "noise_multiplier": 1.0}
    included = np.random.default_rng(0).random(400) < 0.5
    run = run_canaries([noise_mod.noise_mod(entry, 5)], entry, 5, arrays, 400, 4, 10.0,
                       included)
    rows = pd.DataFrame({"scenario": "dp", "defense": "dp_fedavg", "level": 1.0,
                         "noise_source": "os_entropy", "canaries": 400, "rounds": 4,
                         "canary_norm": 10.0, "norm_basis": "x", "clip": 1.0,
                         "noise_std": 1.0, "parameters": 564,
                         "epsilon_claimed": epsilon(1.0, 1, 1e-5), "epsilon_run": np.nan,
                         "delta": 1e-5, "canary": range(400), "round": run.rounds,
                         "included": run.included, "score_direct": run.scores["direct"],
                         "score_replay": run.scores["replay"]})
    (row,) = summarise(rows).to_dict("records")
    exact = gdp_epsilon(1.0, 1e-5)
    assert exact < row["epsilon_claimed"]  # RDP's claim is an upper bound on the exact ε
    assert abs(row["epsilon_estimate"] - exact) < 0.3 * exact
    assert row["status"] == CONSISTENT


def test_a_client_update_without_the_claimed_noise_is_told_from_one_with_it() -> None:
    """The energy test on the federation's own updates: a clipped update (norm C) without noise
    is far below the noise's energy, any update with the noise is not (its worst case, a zero
    update, sits at the noise's mean; 20 draws stay above five standard deviations below)."""
    rng = np.random.default_rng(0)
    shapes = [(50, 40), (3000,)]
    entry = {**DP, "noise_multiplier": 0.5}
    clipped = clip_update([rng.normal(0, 1, s) for s in shapes], 1.0)
    noised = [perturb_update(clipped, entry, rng) for _ in range(10)]
    zero = [perturb_update([np.zeros(s) for s in shapes], entry, rng) for _ in range(10)]
    got = noise_energy(entry, [clipped, *noised, *zero])
    assert got[0][1] and got[0][0] < 1e-3
    assert not any(missing for _, missing in got[1:])
    assert all(abs(r - 1) < 0.1 for r, _ in got[1:])


def test_the_server_decodes_a_reply_as_flower_does() -> None:
    """The server's faster read of a reply's arrays (each header parsed once) against Flower's
    own ``bytes_to_ndarray``: dtypes, shapes, Fortran order, a scalar; twice each (the cached
    header)."""
    from flwr.common import bytes_to_ndarray, ndarray_to_bytes

    rng = np.random.default_rng(0)
    for a in (rng.normal(size=(3, 4)).astype(np.float32),
              np.asfortranarray(rng.normal(size=(3, 4, 2))), np.array(3.5),
              np.arange(7, dtype=np.int64), rng.normal(size=(2, 3)).astype(np.float16)):
        blob = ndarray_to_bytes(a)
        for _ in range(2):
            got, want = decode_tensor(blob), bytes_to_ndarray(blob)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_canary_norm_is_the_clip_multiple_or_the_clients_median_norm() -> None:
    assert canary_norm(DP, [], 10.0)[0] == 10.0
    ups = [[np.full(100, v, np.float32)] for v in (0.1, 0.2, 0.3)]
    assert canary_norm(None, ups, 10.0)[0] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no client update"):
        canary_norm(None, [], 10.0)


def _summary(status: str, bound: float, ceiling_: float, defense: str = "dp_fedavg",
             **kw) -> dict:
    return {"scenario": kw.pop("scenario", defense), "defense": defense, "level": 1.0,
            "noise_source": "os_entropy", "canaries": 1000, "rounds": 35, "included": 500,
            "canary_norm": 50.0, "norm_basis": "x", "clip": 5.0, "parameters": 10,
            "guesses": 904, "correct": 600, "attack": "direct", "epsilon_lower_bound": bound,
            "epsilon_estimate": 1.0, "epsilon_claimed": 4.73, "epsilon_run": 44.3,
            "delta": 1e-5, "status": status, "confidence": 0.95, "ceiling": ceiling_, "mu": 1.0,
            "perfect_bound": 0.7, "p_claim": 0.5, "p_zero": 0.01, "detectable_mu": 4.2,
            "detectable_epsilon": 26.0, "clients_checked": 4, "clients_without_noise": 0,
            "noise_energy_min": 0.99, **kw}


def test_the_verdict_lines_read_the_status_against_the_control() -> None:
    control = _summary(NO_CLAIM, 5.46, 5.46, "none", scenario="baseline", correct=904,
                       epsilon_claimed=np.nan)
    dp_ok = _summary(CONSISTENT, 0.7, 5.46)
    (line,) = findings(pd.DataFrame([control, dp_ok]), {})
    assert line.level == "not detected" and line.sentence.startswith("consistent")
    assert "μ ≥ 4.2" in line.power and "904/904" in line.power
    (line,) = findings(pd.DataFrame([control, _summary(VIOLATED, 5.2, 5.46, p_claim=0.01)]),
                       {})
    assert line.level == "high" and line.sentence.startswith("violated") and line.p_value == 0.01
    # a federation client whose update lacks the claimed noise is a violation whatever the
    # canaries show; it is certain, not a significance claim for Holm's correction
    (line,) = findings(pd.DataFrame([control, _summary(VIOLATED, 0.7, 5.46,
                                                       clients_without_noise=1,
                                                       noise_energy_min=1e-6)]), {})
    assert line.level == "high" and "1/4 of the federation's client updates" in line.sentence
    assert math.isnan(line.p_value)
    # a failed control leaves a consistent level inconclusive; a violation stands without it
    failed = {**control, "epsilon_lower_bound": 1.0}
    (line,) = findings(pd.DataFrame([failed, dp_ok]), {})
    assert line.level == "inconclusive"
    # a claim above what the canaries certify cannot be refuted: no power, inconclusive
    (line,) = findings(pd.DataFrame([control, _summary(CONSISTENT, 0.7, 5.46, epsilon_claimed=9.0,
                                                       detectable_mu=math.inf)]), {})
    assert line.level == "inconclusive" and "above what its canaries can certify" in \
        line.sentence
    # Laplace claims nothing: told apart as well as without noise is high
    lap = _summary(NO_CLAIM, 5.46, 5.46, "laplace_noise", epsilon_claimed=np.nan)
    (line,) = findings(pd.DataFrame([control, lap]), {})
    assert line.level == "high" and line.sentence.startswith("no claim")


def test_the_audit_defaults_to_the_control_and_the_noise_grid_and_refuses_secagg() -> None:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    valid = validate_config(copy.deepcopy(cfg))
    assert valid["attacks"]["privacy_audit"]["scenarios"] == [
        "baseline", "laplace-b0.0001", "laplace-b0.01", "dp-z1.0"]
    cfg.setdefault("attacks", {})["privacy_audit"] = {"scenarios": ["secagg"]}
    with pytest.raises(ConfigError, match="privacy_audit.scenarios.*SecAgg"):
        validate_config(cfg)
