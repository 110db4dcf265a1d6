"""The Gaussian mechanism's exact privacy curve, and an ε estimate from canary scores.

A canary's score under a Gaussian mechanism is N(0, 1) when the canary is left out and N(μ, 1)
when it is in (after dividing by the noise's std): the pair is μ-GDP (Dong, Roth & Su, "Gaussian
Differential Privacy", JRSS-B 2022, Def. 2.6), whose (ε, δ) curve is exact (their Cor. 2.13;
Balle & Wang, ICML 2018, Thm. 8):

    δ(ε) = Φ(−ε/μ + μ/2) − e^ε · Φ(−ε/μ − μ/2).

The ε estimate of Andrew, Kairouz, Oh, Oprea, McMahan & Suriyakumar ("One-shot Empirical Privacy
Estimation for Federated Learning", ICLR 2024, §3): fit Gaussians to the scores of canaries that
were in the run and of those that were not, and report the ε of the Gaussian pair that fits. Here
both fits share the excluded canaries' standard deviation (their method fits each its own; with
canaries that the noise alone spreads, the two are the same), so the estimate is the ε of
μ̂-GDP with μ̂ = (mean_in − mean_out) / sd_out. It is an estimate, not a bound: the one-run
bound (:mod:`.one_run`) is the number that can contradict a claim.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

BISECTION_STEPS = 80


def gdp_delta(eps: float, mu: float) -> float:
    """δ(ε) of μ-GDP (module docstring); the e^ε term in logs so large ε stays finite."""
    if mu <= 0:
        return 0.0
    a = norm.cdf(-eps / mu + mu / 2.0)
    b = math.exp(eps + norm.logcdf(-eps / mu - mu / 2.0))
    return max(0.0, float(a - b))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The ε of μ-GDP at ``delta``: the ε where :func:`gdp_delta` falls to ``delta`` (it
    falls monotonically in ε); 0 when μ ≤ 0 or δ(0) is already at most ``delta``."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1); got {delta}")
    if not math.isfinite(mu):
        return math.inf
    if mu <= 0 or gdp_delta(0.0, mu) <= delta:
        return 0.0
    lo, hi = 0.0, 1.0
    while gdp_delta(hi, mu) > delta:
        lo, hi = hi, 2.0 * hi
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if gdp_delta(mid, mu) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def fitted_mu(scores: np.ndarray, included: np.ndarray) -> float:
    """μ̂ = (mean of the included canaries' scores − mean of the excluded) / sd of the
    excluded (module docstring); ``inf`` when the excluded scores do not vary."""
    scores = np.asarray(scores, dtype=np.float64)
    included = np.asarray(included, dtype=bool)
    s_in, s_out = scores[included], scores[~included]
    if s_in.size < 2 or s_out.size < 2:
        raise ValueError("the estimate needs at least 2 included and 2 excluded canaries")
    sd = float(s_out.std(ddof=1))
    gap = float(s_in.mean() - s_out.mean())
    if sd == 0:
        return math.inf if gap > 0 else 0.0
    return gap / sd


def estimated_epsilon(scores: np.ndarray, included: np.ndarray, delta: float) -> float:
    """Andrew et al.'s ε estimate: the ε of the fitted Gaussian pair (module docstring)."""
    return gdp_epsilon(fitted_mu(scores, included), delta)
