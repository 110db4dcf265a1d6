"""The one-run privacy audit (fedaudit.attacks.privacy_audit) at the mechanism level.

References: the closed-form ceiling of Steinke, Nasr & Jagielski 2023 (all guesses right, δ = 0);
randomised response, for which the bound's guarantee is exact; Google's ``dp-accounting`` PLD
accountant for the Gaussian mechanism's ε (an independent implementation of the curve
``gaussian.py`` writes in closed form); the clients' real noise code for the bug suite.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from fedaudit.attacks.privacy_audit.canaries import (
    CONSISTENT,
    NO_CLAIM,
    VIOLATED,
    CanaryDesign,
    audit,
    gaussian_mu,
    run_canaries,
    simulated_gaussian_bound,
)
from fedaudit.attacks.privacy_audit.gaussian import estimated_epsilon, gdp_epsilon
from fedaudit.attacks.privacy_audit.one_run import (
    ceiling,
    closed_form_ceiling,
    epsilon_lower_bound,
    guess,
    p_value,
)
from fedaudit.defenses.dp_fedavg.budget import epsilon as dp_fedavg_epsilon

DELTA = 1e-5
CLIP = 1.0
# z = 3 over one round: the accountant claims ε ≈ 1.39 at δ = 1e-5, which 1,000 canaries can
# contradict (their ceiling under the default guesses is ≈ 5.5)
Z = 3.0
DESIGN = CanaryDesign(m=1000, rounds=1, dim=64)  # client canaries do not interfere


def dp_entry(**over: object) -> dict[str, object]:
    return {"name": "dp_fedavg", "clip": CLIP, "noise_multiplier": Z, "delta": DELTA,
            "noise_source": "os_entropy", **over}


def private_rng(key: int):
    """A client generator the server cannot derive (tests must be reproducible; the real one is
    OS entropy)."""
    return lambda i, t: np.random.default_rng([key, 7919, i, t])


def run_audit(entry, claimed, key: int = 0, design: CanaryDesign = DESIGN, **kw):
    scores, included = run_canaries(entry, design, seed=key, clip=CLIP,
                                    client_rng=kw.pop("client_rng", private_rng(key)), **kw)
    return audit(scores, included, design, claimed, DELTA)


@pytest.mark.parametrize(("r", "paper"), [(24, 2.0), (100, 3.5), (1000, 5.8)])
def test_the_ceiling_matches_the_closed_form_and_the_papers_figures(r, paper):
    assert ceiling(r, r) == pytest.approx(closed_form_ceiling(r), abs=1e-9)
    assert closed_form_ceiling(r) == pytest.approx(paper, abs=0.05)
    # a δ term can only lower what the same guesses certify
    assert ceiling(r, r, delta=DELTA) < ceiling(r, r)


@pytest.mark.parametrize("delta", [0.0, DELTA])
def test_the_bound_exceeds_the_true_epsilon_at_most_5_percent_of_the_time(delta):
    """Randomised response at ε is exactly ε-DP and its correct guesses are exactly
    Binomial(r, e^ε/(1+e^ε)): the bound exceeds ε iff the p-value at ε is below 0.05."""
    rng = np.random.default_rng(0)
    eps, m, r, draws = 1.0, 200, 200, 4000
    q = math.exp(eps) / (1 + math.exp(eps))
    v = rng.binomial(r, q, size=draws)
    rejected = np.mean([p_value(m, r, int(k), eps, delta) < 0.05 for k in v])
    assert rejected <= binom.ppf(0.99, draws, 0.05) / draws
    # and the test is not vacuous: at ε/2 the same draws are rejected most of the time
    assert np.mean([p_value(m, r, int(k), eps / 2, delta) < 0.05 for k in v]) > 0.5


def test_epsilon_lower_bound_inverts_the_p_value():
    eps = epsilon_lower_bound(1000, 900, 700, DELTA)
    assert p_value(1000, 900, 700, eps, DELTA) < 0.05 <= p_value(1000, 900, 700, eps + 1e-6,
                                                                  DELTA)
    assert epsilon_lower_bound(1000, 900, 450, DELTA) == 0.0  # chance: nothing certified
    with pytest.raises(ValueError, match="correct"):
        p_value(10, 5, 6, 1.0)


def test_guesses_take_the_highest_and_lowest_scores_and_count_against_the_draw():
    scores = np.array([0.9, 0.1, 0.5, 0.8, 0.2, 0.3])
    included = np.array([True, False, True, False, False, True])
    g = guess(scores, included, k_in=2, k_out=2)  # in: 0.9, 0.8; out: 0.1, 0.2
    assert (g.m, g.r, g.v) == (6, 4, 3)
    with pytest.raises(ValueError, match="do not fit"):
        guess(scores, included, 4, 3)


@pytest.mark.parametrize("mu", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-3])
def test_the_gaussian_curve_matches_dp_accountings_pld(mu, delta):
    from dp_accounting import dp_event
    from dp_accounting.pld import PLDAccountant

    pld = PLDAccountant()
    pld.compose(dp_event.GaussianDpEvent(1.0 / mu))
    assert gdp_epsilon(mu, delta) == pytest.approx(pld.get_epsilon(delta), rel=1e-5)


def test_the_estimate_recovers_a_known_gaussian_pair():
    rng = np.random.default_rng(1)
    included = rng.random(20000) < 0.5
    scores = rng.standard_normal(20000) + 1.0 * included
    assert estimated_epsilon(scores, included, DELTA) == pytest.approx(
        gdp_epsilon(1.0, DELTA), rel=0.05)


def test_the_bug_suite_is_flagged_and_the_correct_noise_is_not():
    """Item 3 at the mechanism level: each bug runs the clients' real perturb hook with what the
    bug changes; the accountant is told the correct mechanism (z = 3, clip C, one round)."""
    claimed = dp_fedavg_epsilon(Z, 1, DELTA)
    assert claimed < ceiling(DESIGN.m, sum(DESIGN.guesses()), DELTA) / 2  # certifiable
    correct = run_audit(dp_entry(), claimed)
    assert correct.status == CONSISTENT, correct
    bugs = {
        "noise off": run_audit(dp_entry(noise_multiplier=0.0), claimed),
        # clipped at 100 C while the noise is still z·C (the accountant told the old C)
        "clip x100": run_audit(dp_entry(clip=100 * CLIP, noise_multiplier=Z / 100), claimed),
        "clipping off": run_audit(dp_entry(clip=1e6 * CLIP, noise_multiplier=Z / 1e6), claimed),
        # seeded noise: the server derives the client's seed and subtracts the noise
        "seeded noise": run_audit(dp_entry(noise_source="simulation"), claimed, client_rng=None),
    }
    for name, result in bugs.items():
        assert result.status == VIOLATED, (name, result)
        assert result.epsilon_lower_bound > 2 * claimed, (name, result)
    assert bugs["seeded noise"].attack == "replay"  # only the replay sees through it
    assert bugs["noise off"].correct == bugs["noise off"].guesses


def test_over_20_seeds_the_correct_implementation_exceeds_its_exact_epsilon_no_more_than_chance():
    """Item 4, soundness: the claim is the Gaussian mechanism's exact ε (tighter than the RDP
    accountant's), so the bound may exceed it only with the 5 % error of a 95 % bound."""
    exact = gdp_epsilon(gaussian_mu(1, 1.0), DELTA)
    design = CanaryDesign(m=500, rounds=1, dim=64)
    above = sum(run_audit(dp_entry(noise_multiplier=1.0), exact, key=k,
                          design=design).epsilon_lower_bound > exact for k in range(20))
    assert above <= binom.ppf(0.99, 20, 0.05)


@pytest.mark.parametrize("z", [0.5, 1.0, 2.0])
def test_the_audit_has_the_power_of_a_perfect_attacker_on_the_gaussian_mechanism(z):
    """Item 4, power: through the clients' noise code the bound reaches at least 80 % of what a
    perfect white-box attacker reaches on simulated N(μ·1[in], 1) scores with the same m."""
    design = CanaryDesign(m=500, rounds=2, dim=64)
    real = np.mean([run_audit(dp_entry(noise_multiplier=z), None, key=k,
                              design=design).epsilon_lower_bound for k in range(8)])
    simulated = np.mean([simulated_gaussian_bound(gaussian_mu(2, z), design, k, DELTA)
                         for k in range(8)])
    assert simulated > 0.1  # a level where there is something to reach
    assert real >= 0.8 * simulated, (real, simulated)


def test_without_a_defense_the_control_reaches_the_ceiling_and_laplace_claims_nothing():
    control = run_audit(None, None)
    assert control.correct == control.guesses
    assert control.epsilon_lower_bound >= 0.8 * ceiling(DESIGN.m, DESIGN.m, DELTA)
    assert control.status == NO_CLAIM
    laplace = run_audit({"name": "laplace_noise", "scale": 0.05,
                         "noise_source": "os_entropy"}, None)
    assert laplace.status == NO_CLAIM
    assert laplace.epsilon_lower_bound > 1.0  # b = 0.05 against a canary of norm 10: it leaks


def test_dp_sgd_sample_canaries_flag_an_accountant_told_a_smaller_sampling_rate():
    """Item 3's DP-SGD bug at the mechanism level: the client's real DP-SGD (Opacus' per-sample
    clip, Poisson lots, noise) trains a linear model on the included canaries; its accountant
    is told the sampling rate ÷ 50. The true events' ε (≈ 31 at σ = 1 over 80 steps at
    q ≈ 0.41) is consistent with the bound; the understated one (≈ 1.1) is violated."""
    from fedaudit.attacks.privacy_audit.sample import run_sample_canaries
    from fedaudit.defenses.dp_sgd.budget import epsilon as dp_sgd_epsilon

    entry = {"name": "dp_sgd", "max_grad_norm": CLIP, "noise_multiplier": 1.0, "delta": DELTA}
    design = CanaryDesign(m=1000, dim=2048)
    scores, included, events = run_sample_canaries(entry, design, seed=1, lot_size=200,
                                                   epochs=40, simulation_seed=5)
    assert sum(n for _, n in events) == 80
    true_claim = dp_sgd_epsilon(1.0, events, DELTA)
    understated = dp_sgd_epsilon(1.0, [(q / 50, n) for q, n in events], DELTA)
    assert understated < ceiling(design.m, sum(design.guesses()), DELTA) / 2  # certifiable
    assert audit(scores, included, design, true_claim, DELTA).status == CONSISTENT
    flagged = audit(scores, included, design, understated, DELTA)
    assert flagged.status == VIOLATED, flagged
