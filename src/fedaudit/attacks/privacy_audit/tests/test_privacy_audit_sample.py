"""Sample-level canaries under DP-SGD: one client's real round (the UNet, its data, Opacus) with
gradient and slice canaries, the bug suite planted in the DP-SGD code the clients run, the
references and the table's rows.

References: the client's own round (``SCTClient.fit``, bit for bit) for what the audit re-runs;
the accountant's ε (``dp-accounting``) for the claim; the Gaussian mechanism's perfect attacker
for the sum-score reference at q = 1; the closed-form ceiling for a noise-free round.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from fl_study import make_study, tiny_plan
from opacus.optimizers import DPOptimizer

from conftest import REPO
from fedaudit.attacks.privacy_audit import sample_round
from fedaudit.attacks.privacy_audit.canaries import CONSISTENT, VIOLATED, CanaryDesign
from fedaudit.attacks.privacy_audit.one_run import ceiling
from fedaudit.attacks.privacy_audit.references import reference_bound
from fedaudit.attacks.privacy_audit.report import audit_table, findings
from fedaudit.attacks.privacy_audit.sample_report import simulated_sum_bound, summarise_sample
from fedaudit.config import ConfigError, validate_config
from fedaudit.defenses.dp_sgd import private
from fedaudit.federation.client import SCTClient
from fedaudit.models import definition
from fedaudit.models.weights import get_arrays
from fedaudit.report.levels import Level
from fedaudit.scenarios import Scenario

logging.getLogger("dp_accounting").setLevel(logging.ERROR)
M = 1000


def _plan(root, sigma: float, batch: int, epochs: int, simulation: bool = False):
    entry = {"name": "dp_sgd", "noise_multiplier": sigma, "max_grad_norm": 1.0, "delta": 1e-5,
             "groups": 32, **({"noise_source": "simulation"} if simulation else {})}
    plan = tiny_plan(make_study(root / "study"), root / "run",
                     Scenario("dpsgd", defenses=(entry,)), rounds=1)
    # center B: 2 volumes of 4 slices per epoch, so q = batch / 8
    return dataclasses.replace(plan, local=dataclasses.replace(
        plan.local, batch_size=batch, local_epochs=epochs))


def _global(plan) -> list[np.ndarray]:
    torch.manual_seed(0)
    return get_arrays(definition.build(plan.model_definition()))


def _settings(gradient: int = M, slices: int = 0) -> dict:
    return {"center": "B", "gradient_canaries": gradient, "slice_canaries": slices,
            "norm_factor": 100.0}


_CORRECT: dict[tuple, pd.Series] = {}


def _audit(plan, settings, seed: int = 1) -> pd.Series:
    seeds = iter(np.random.SeedSequence(seed).spawn(2))
    rows = sample_round.audit_rows(plan, plan.scenario.name, _global(plan), 1, settings,
                                   progress=lambda *_: None,
                                   rng=lambda: np.random.default_rng(next(seeds)))
    return summarise_sample(rows, 0.95, 7).iloc[0]


def test_the_audited_round_is_the_clients_own_round(tmp_path) -> None:
    """With every canary left out, the audit's round is the client's round bit for bit (the same
    seed, model, lots and noise under simulation noise): the canaries' draws touch nothing of
    the client's."""
    plan = _plan(tmp_path, 1.0, 4, 1, simulation=True)
    arrays = _global(plan)
    expected, _, _ = SCTClient(plan, "B").fit([a.copy() for a in arrays], {"round": 1})
    canaries = sample_round.make_canaries([a.shape for a in arrays], (32, 32), 50, 5, 100.0, 7)
    res = sample_round.run_round(plan, "B", arrays, 1, canaries, np.zeros(50, bool),
                                 np.zeros(5, bool), np.random.default_rng(0))
    for a, b in zip(res.update, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert res.events == [(0.5, 2)] and res.rates == [0.5]


def test_included_canaries_join_lots_at_the_loaders_rate_and_pass_through_the_clip(
        tmp_path) -> None:
    """An included gradient canary joins each of the round's lots with the loader's rate (20
    steps at q = 0.5: mean 10 lots) and, without noise, moves its coordinate by the clipped
    canary's Adam step; an excluded one never joins."""
    plan = sample_round.control_plan(_plan(tmp_path, 2.0, 4, 10))
    arrays = _global(plan)
    canaries = sample_round.make_canaries([a.shape for a in arrays], (32, 32), 400, 0, 100.0, 7)
    grad_in = np.random.default_rng(3).random(400) < 0.5
    res = sample_round.run_round(plan, "B", arrays, 1, canaries, grad_in, np.zeros(0, bool),
                                 np.random.default_rng(4))
    joined = res.joined_gradient[grad_in]
    assert abs(joined.mean() - 10.0) < 4 * math.sqrt(20 * 0.25 / joined.size)
    assert not res.joined_gradient[~grad_in].any()
    # every canary coordinate lies in some tensor, and the clipped canaries dominate theirs
    assert np.median(res.gradient_scores[grad_in]) > np.percentile(
        res.gradient_scores[~grad_in], 90)


# σ = 3, lots of 1 of 8 slices, 6 epochs (48 steps at q = 1/8): the round claims ε ≈ 1.34,
# 1,000 gradient canaries certify at most 5.06; σ = 2, lots of 4, 10 epochs (20 steps at q = ½)
# claims 6.23, and the accountant told q/20 claims 0.33
STRICT = (3.0, 1, 6)
WIDE = (2.0, 4, 10)


def _noise_off(std, reference, generator=None, secure_mode=False):
    return torch.zeros_like(reference)


def _clip_x10000(optimizer, noise_multiplier, max_grad_norm, **kwargs):
    # the clip raised ten-thousandfold, the noise still calibrated to the C the accountant knows
    return DPOptimizer(optimizer, noise_multiplier=noise_multiplier / 1e4,
                    max_grad_norm=max_grad_norm * 1e4, **kwargs)


_epoch = private.DPSGDTraining._epoch


def _rate_told_20x_smaller(self, num_samples, batch_size):
    q = _epoch(self, num_samples, batch_size)
    self.events[-1][0] = q / 20  # what the accountant hears; the loader samples at q
    return q


@pytest.mark.parametrize(("bug", "setting", "target", "attr", "fake"), [
    ("noise off", STRICT, "opacus.optimizers.optimizer", "_generate_noise", _noise_off),
    ("clipping off", STRICT, "opacus.optimizers", "DPOptimizer", _clip_x10000),
    ("sampling rate", WIDE, "fedaudit.defenses.dp_sgd.private.DPSGDTraining", "_epoch",
     _rate_told_20x_smaller)])
def test_each_planted_dp_sgd_bug_is_flagged_and_the_correct_code_is_not(
        tmp_path, monkeypatch, bug, setting, target, attr, fake) -> None:
    """The bug suite in the DP-SGD code the clients run (Opacus' noise, its clip, the rate the
    accountant is told), on the UNet's real round: each bug is ``violated`` (measured: noise off
    5.06 vs 1.34, the clip ×10⁴ 2.1 vs 1.34, the rate ÷ 20 0.63-0.68 vs 0.33), the same round
    without the bug ``consistent``."""
    plan = _plan(tmp_path, *setting)
    if setting not in _CORRECT:  # the correct code once per setting
        _CORRECT[setting] = _audit(plan, _settings())
    correct = _CORRECT[setting]
    assert correct["status"] == CONSISTENT, correct["epsilon_lower_bound"]
    assert correct["control_ok"], (correct["gradient_control_bound"],
                                   correct["gradient_control_reference"])
    monkeypatch.setattr(f"{target}.{attr}", fake)
    broken = _audit(plan, _settings())
    assert broken["status"] == VIOLATED, (bug, broken["epsilon_lower_bound"],
                                          broken["epsilon_claimed"])
    assert broken["p_claim"] < 0.05


def test_the_slice_canaries_run_through_the_unet_and_the_table_reads_both_attackers(
        tmp_path) -> None:
    """Slice canaries join the lots (Opacus computes their gradients through the UNet) and the
    black-box attacker scores them from the loss; the row carries both attackers and the
    control, the table shows the sample block, the verdict line reads the row's own control."""
    plan = _plan(tmp_path, *STRICT)
    row = _audit(plan, _settings(gradient=200, slices=20))
    assert row["slice_canaries"] == 20 and row["gradient_canaries"] == 200
    assert 0 <= row["slice_bound"] <= row["slice_ceiling"]
    assert row["attack"] in ("white-box", "black-box") and row["status"] == CONSISTENT
    table = audit_table(pd.DataFrame([row]))
    assert len(table.blocks) == 1 and "Sample level" in table.blocks[0].title
    line = findings(pd.DataFrame([row]), {})[0]
    assert "sample level" in line.topic and line.level in (Level.NOT_DETECTED,
                                                            Level.INCONCLUSIVE)


def test_the_sum_score_reference_is_the_gaussian_mechanism_at_q_1_and_the_ceiling_without_noise(
) -> None:
    """At q = 1 every included canary adds C to each of n steps: the sum score is N(n, nσ²)
    against N(0, nσ²), the Gaussian mechanism of μ = √n/σ, whose perfect attacker's bound it
    must match (sampling error of two simulations: 0.15); without noise every guess is right."""
    design = CanaryDesign(m=M, confidence=0.975)
    k_in, k_out = design.guesses()
    for n, sigma in ((4, 2.0), (16, 3.0)):
        ours = simulated_sum_bound([(1.0, n)], sigma, M, k_in, k_out, 1e-5, 0.975, 3)
        assert abs(ours - reference_bound(math.sqrt(n) / sigma, design, 3, 1e-5)) < 0.15
    assert simulated_sum_bound([(1.0, 2)], 0.0, M, k_in, k_out, 1e-5, 0.975, 3) == pytest.approx(
        ceiling(M, k_in + k_out, 1e-5, 0.975))


def _row(**overrides) -> dict:
    row = {"scenario": "dpsgd-z1.0", "canary_level": "sample", "defense": "dp_sgd",
           "level": 1.0, "noise_source": "os_entropy", "center": "A", "round": 35, "steps": 8,
           "sample_rate": 0.1, "clip": 1.0, "delta": 1e-5, "epsilon_claimed": 2.0,
           "epsilon_lower_bound": 0.3, "attack": "white-box", "correct": 500, "guesses": 904,
           "canaries": 1000, "status": CONSISTENT, "p_claim": 1.0, "perfect_bound": 0.4,
           "ceiling": 5.06, "control_ok": True, "gradient_canaries": 1000,
           "gradient_included": 500, "gradient_correct": 500, "gradient_guesses": 904,
           "gradient_bound": 0.3, "gradient_control_correct": 800,
           "gradient_control_guesses": 904, "gradient_control_bound": 1.9,
           "gradient_control_reference": 2.0, "detectable_mu": 2.0,
           "detectable_epsilon": 7.0}
    return {**row, **overrides}


def test_the_sample_verdict_reads_violations_its_own_control_and_power() -> None:
    """Violated is high with its p-value; a failed control (the noise-free round short of 80 %
    of the sum-score attacker) is inconclusive whatever the bound; otherwise consistent, with
    the power stated."""
    high = findings(pd.DataFrame([_row(status=VIOLATED, epsilon_lower_bound=3.0,
                                       p_claim=0.001)]), {})[0]
    assert high.level == Level.HIGH and high.p_value == 0.001
    weak = findings(pd.DataFrame([_row(control_ok=False, gradient_control_bound=0.5)]), {})[0]
    assert weak.level == Level.INCONCLUSIVE and "control failed" in weak.text
    fine = findings(pd.DataFrame([_row()]), {})[0]
    assert fine.level == Level.NOT_DETECTED and "flags a leak from μ ≥ 2" in fine.power


def _merged(base: dict, overlay: dict) -> dict:
    """``--configfile base overlay``: Snakemake merges nested mappings key by key."""
    for k, v in overlay.items():
        base[k] = _merged(base.get(k, {}), v) if isinstance(v, dict) else v
    return base


def test_the_sample_level_config_is_off_by_default_checked_and_the_example_turns_it_on(
) -> None:
    """Off by default (the demo trains no DP-SGD federation); on, its scenarios must train with
    DP-SGD and its center must train; the example overlay turns it on for dpsgd-z1.0."""
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config = validate_config(copy.deepcopy(raw))
    sample = config["attacks"]["privacy_audit"]["sample_level"]
    assert sample["enabled"] is False and sample["norm_factor"] == 100.0
    overlay = yaml.safe_load((REPO / "config" / "examples" / "dp-sgd-audit.yaml").read_text())
    on = _merged(copy.deepcopy(raw), overlay)
    config = validate_config(copy.deepcopy(on))
    assert config["attacks"]["privacy_audit"]["sample_level"]["enabled"]
    assert config["scenarios"]["noise"]["dp_sgd"] == [1.0]
    on["attacks"]["privacy_audit"]["sample_level"] = {"enabled": True, "center": "E"}
    with pytest.raises(ConfigError, match="sample_level.center"):
        validate_config(copy.deepcopy(on))
    on["attacks"]["privacy_audit"]["sample_level"] = {"enabled": True,
                                                      "scenarios": ["baseline"]}
    with pytest.raises(ConfigError, match="audit DP-SGD"):
        validate_config(copy.deepcopy(on))
    on["attacks"]["privacy_audit"]["sample_level"] = {"enabled": True,
                                                      "scenarios": ["dpsgd-z1.0"]}
    validate_config(on)
