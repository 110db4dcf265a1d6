"""Confidence intervals the verdicts rest on, shared by every attack that counts successes.

Source: Clopper & Pearson, "The use of confidence or fiducial limits illustrated in the case of
the binomial", Biometrika 1934: the exact (conservative) binomial interval from the beta
distribution's quantiles. A verdict reads its lower end (CONTRIBUTING.md, "Findings").
"""

from __future__ import annotations


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial interval for ``k`` successes in ``n`` trials at ``level``;
    (nan, nan) when ``n`` is 0 (nothing was tried, so nothing is bounded)."""
    if n == 0:
        return float("nan"), float("nan")
    # scipy.stats is imported here, not at the top: the workflow imports this module while it
    # parses the Snakefile, where scipy.stats would add ~1 s to every snakemake invocation
    from scipy.stats import beta

    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def binomial_tail(k: int, n: int, p0: float) -> float:
    """The one-sided p-value of ``k`` or more successes in ``n`` trials when each succeeds with
    the null's probability ``p0``: P(X ≥ k), X ~ Binomial(n, p0) (the exact binomial test,
    Clopper & Pearson's dual); 1 when ``n`` is 0."""
    if n == 0 or k <= 0:
        return 1.0
    from scipy.stats import binom

    p0 = min(max(float(p0), 0.0), 1.0)
    return float(binom.sf(k - 1, n, p0))
