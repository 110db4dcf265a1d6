"""The references a one-run audit's bound is read against (the client level's and the sample
level's): what a perfect attacker reaches on the Gaussian mechanism with the audit's design, and
the smallest leak (μ-GDP) whose bound would pass a claim."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from fedaudit.attacks.privacy_audit.canaries import CanaryDesign, simulated_gaussian_bound
from fedaudit.attacks.privacy_audit.gaussian import gdp_epsilon
from fedaudit.report.tables import DASH

# seeds of the simulated perfect attacker (its median is the reference)
REFERENCE_SEEDS = 5
MU_MAX = 40.0


@lru_cache(maxsize=256)
def reference_bound(mu: float, design: CanaryDesign, seed: int, delta: float) -> float:
    """The perfect attacker's bound on the Gaussian mechanism of ``mu`` with this design: the
    median over :data:`REFERENCE_SEEDS` simulated runs, at the audit's per-attack confidence."""
    if not math.isfinite(mu):
        mu = MU_MAX * 10
    return float(np.median([simulated_gaussian_bound(mu, design, seed + k, delta)
                            for k in range(REFERENCE_SEEDS)]))


@lru_cache(maxsize=64)
def detectable_mu(claimed: float, design: CanaryDesign, seed: int, delta: float) -> float:
    """The smallest μ whose perfect attacker's bound (:func:`reference_bound`) exceeds
    ``claimed``: a mechanism leaking less than that is not flagged by this design (∞ when the
    claim is above what any attacker can certify)."""
    if reference_bound(MU_MAX, design, seed, delta) <= claimed:
        return math.inf
    lo, hi = 0.0, MU_MAX
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        if reference_bound(mid, design, seed, delta) > claimed:
            hi = mid
        else:
            lo = mid
    return hi


def flagged_from(claimed: float, design: CanaryDesign, seed: int, delta: float
                 ) -> tuple[float, float]:
    """:func:`detectable_mu` and its ε at ``delta`` (both ∞ where nothing can be flagged or no ε
    is claimed)."""
    if not math.isfinite(claimed):
        return math.inf, math.inf
    mu = detectable_mu(claimed, design, seed, delta)
    return mu, (gdp_epsilon(mu, delta) if math.isfinite(mu) else math.inf)


def eps_cell(v: float) -> str:
    """An ε cell: two decimals; above 100 (an estimate of groups that do not overlap) "> 100"."""
    if not math.isfinite(v):
        return "∞" if v > 0 else DASH
    return "> 100" if v > 100 else f"{v:.2f}"
