"""Confidence intervals the verdicts rest on, shared by every attack that counts successes.

Source: Clopper & Pearson, "The use of confidence or fiducial limits illustrated in the case of
the binomial", Biometrika 1934: the exact (conservative) binomial interval from the beta
distribution's quantiles. A verdict reads its lower end (CONTRIBUTING.md, "Findings").
"""

from __future__ import annotations

from scipy.stats import beta


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial interval for ``k`` successes in ``n`` trials at ``level``;
    (nan, nan) when ``n`` is 0 (nothing was tried, so nothing is bounded)."""
    if n == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi
