"""An ε lower bound from one training run: Steinke, Nasr & Jagielski, "Privacy Auditing with One
(1) Training Run", NeurIPS 2023.

The game: ``m`` canaries, each included in the run independently with probability ½ by a draw
the auditor keeps; after the run the attacker scores every canary, guesses "included" on its
``k₊`` highest scores and "excluded" on its ``k₋`` lowest and abstains on the rest
(``r = k₊ + k₋`` guesses, fixed before the run). If the run is ε-DP, the number of correct
guesses ``W`` is stochastically dominated by Binomial(r, e^ε / (1 + e^ε)) (their Theorem 3.1:
every guess is no better than ε-randomised response). Under (ε, δ)-DP the tail gains a δ term:

    P[W ≥ v] ≤ P[B ≥ v] + 2mδ · max_{1 ≤ i ≤ v} (1/i) · P[v − i ≤ B < v],   B ~ Bin(r, q_ε),

(the same paper's (ε, δ) form of the theorem, which its appendix evaluates the same way). The
lower bound at confidence 1 − β is the largest ε whose p-value for the observed ``v`` is below β:
with ``v`` correct guesses, a run claiming that ε (at that δ) would have produced so many with
probability under β.

Closed-form check (δ = 0, every guess correct): ``P[B = r] = q^r ≤ β`` gives
``ε = log(q / (1 − q))`` with ``q = β^(1/r)``: about 2.0 at 24 guesses, 3.5 at 100 and 5.8 at
1,000 for β = 0.05. This is the ceiling of the method: more guesses, not a stronger attack, raise
it (:func:`ceiling`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

BISECTION_STEPS = 60


def _q(eps: float) -> float:
    """Accuracy of ε-randomised response, e^ε / (1 + e^ε) (written to stay finite for large ε)."""
    return 1.0 / (1.0 + math.exp(-eps))


def p_value(m: int, r: int, v: int, eps: float, delta: float = 0.0) -> float:
    """P[W ≥ v] bound under (ε, δ)-DP for ``r`` guesses on ``m`` canaries (module docstring):
    the probability that a run satisfying the claim gives ``v`` or more correct guesses."""
    _check_counts(m, r, v)
    if eps < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need eps >= 0 and 0 <= delta <= 1; got {eps}, {delta}")
    q = _q(eps)
    tail = float(binom.sf(v - 1, r, q))  # P[B >= v]
    if delta == 0 or v == 0:
        return min(1.0, tail)
    # P[v - i <= B < v] for i = 1..v, a running sum of the pmf downwards from v - 1
    window = np.cumsum(binom.pmf(np.arange(v - 1, -1, -1), r, q))
    alpha = float(np.max(window / np.arange(1, v + 1)))
    return min(1.0, tail + 2.0 * m * delta * alpha)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float = 0.0,
                        confidence: float = 0.95) -> float:
    """The largest ε rejected at ``confidence``: ``p_value(ε) < 1 − confidence`` (0 when even
    ε = 0 is not rejected). ``p_value`` grows with ε, so bisection finds it."""
    _check_counts(m, r, v)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    level = 1.0 - confidence
    if p_value(m, r, v, 0.0, delta) >= level:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) < level:
        lo, hi = hi, 2.0 * hi
        if hi > 1e4:  # every guess right with a vanishing δ term: no finite ε explains it
            return math.inf
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if p_value(m, r, v, mid, delta) < level:
            lo = mid
        else:
            hi = mid
    return lo


def ceiling(m: int, r: int, delta: float = 0.0, confidence: float = 0.95) -> float:
    """The bound when all ``r`` guesses are right: the most this design can certify."""
    return epsilon_lower_bound(m, r, r, delta, confidence)


def closed_form_ceiling(r: int, confidence: float = 0.95) -> float:
    """The δ = 0 ceiling in closed form (module docstring): ``log(q / (1 − q))``,
    ``q = (1 − confidence)^(1/r)``."""
    q = (1.0 - confidence) ** (1.0 / r)
    return math.log(q / (1.0 - q))


@dataclass(frozen=True)
class Guesses:
    """What the attacker's guesses scored against the auditor's draw."""

    m: int  # canaries
    r: int  # guesses made (the rest abstained)
    v: int  # correct guesses


def guess(scores: np.ndarray, included: np.ndarray, k_in: int, k_out: int) -> Guesses:
    """Guess "included" on the ``k_in`` highest scores and "excluded" on the ``k_out`` lowest
    (ties ordered by canary index, a rule fixed before the scores exist), then count the guesses
    the auditor's draw ``included`` confirms."""
    scores = np.asarray(scores, dtype=np.float64)
    included = np.asarray(included, dtype=bool)
    m = scores.size
    if included.shape != scores.shape:
        raise ValueError(f"{m} scores but {included.size} inclusion draws")
    if not np.all(np.isfinite(scores)):
        raise ValueError("a canary score is not finite")
    if k_in < 0 or k_out < 0 or k_in + k_out > m:
        raise ValueError(f"k_in = {k_in} and k_out = {k_out} guesses do not fit {m} canaries")
    order = np.argsort(-scores, kind="stable")  # highest first
    guessed_in = order[:k_in]
    guessed_out = order[m - k_out:] if k_out else order[:0]
    v = int(included[guessed_in].sum()) + int((~included[guessed_out]).sum())
    return Guesses(m=m, r=k_in + k_out, v=v)


def _check_counts(m: int, r: int, v: int) -> None:
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= correct ({v}) <= guesses ({r}) <= canaries ({m})")
