"""ROC-AUC of a membership attack with patients as the unit: point estimate, bootstrap CI over
patients and a permutation null.

Slices (or batches) of one patient are not independent: the patient is the unit of privacy in
medicine and the unit of sampling, so every interval here resamples patients, never slices.

- AUC: the Mann-Whitney statistic, P(score of a member item > score of a non-member item) with
  ties counted ½ (Hanley & McNeil, "The meaning and use of the area under a receiver operating
  characteristic (ROC) curve", Radiology 1982, Eq. 1 ff.).
- CI: the cluster (patient) bootstrap, members and non-members resampled separately with
  replacement, percentile interval (Efron & Tibshirani, "An Introduction to the Bootstrap",
  1993, ch. 13; resampling clusters, not items: Field & Welsh, "Bootstrapping clustered data",
  JRSS-B 2007). With fewer than :data:`MIN_PER_CLASS` patients in a class there is no interval
  (a bootstrap of one or two patients mostly repeats them; with two per class and perfect
  separation every resample gives AUC 1 and the interval collapses to [1, 1]): NaN, and the
  verdict says so. The percentile interval also collapses at a perfect separation with more
  patients; the permutation p-value, reported beside it, is what says how surprising that is.
- Pooling: a stratified Mann-Whitney statistic (pairs within a stratum only; see
  :func:`cluster_auc`), e.g. Lehmann, "Nonparametrics", 1975, ch. 3 (combining rank sums over
  blocks).
- Permutation null: membership labels permuted among the patients of each stratum (a target
  center: its members and held-out patients keep their numbers), one-sided p-value
  (1 + #{AUC_perm ≥ AUC}) / (1 + n_perm) (Phipson & Smyth, "Permutation P-values Should Never Be
  Zero", SAGMB 2010).

Everything rests on one matrix W[i, j] = Σ over items a of patient i and b of patient j of
[a > b] + ½[a = b]: a bootstrap draw or a permutation only re-weights its rows and columns, so
thousands of resamples cost a few matrix products.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

MIN_PER_CLASS = 3
N_BOOT = 2000
N_PERM = 2000


@dataclass(frozen=True)
class AUCResult:
    auc: float
    ci_low: float
    ci_high: float
    p_value: float
    n_member_patients: int
    n_nonmember_patients: int
    n_member_items: int
    n_nonmember_items: int


def _pair_matrix(items: Sequence[np.ndarray]) -> np.ndarray:
    """W[i, j] = Σ_{a ∈ items[i], b ∈ items[j]} [a > b] + ½[a = b]."""
    n = len(items)
    w = np.zeros((n, n))
    for i in range(n):
        a = items[i][:, None]
        for j in range(n):
            b = items[j][None, :]
            w[i, j] = float(np.sum(a > b) + 0.5 * np.sum(a == b))
    return w


def _auc(w: np.ndarray, pairs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC per row of ``weights`` [B, 2, n] (how many copies of each patient enter as a member,
    ``[:, 0]``, and as a non-member, ``[:, 1]``); ``w`` and ``pairs`` [n, n] hold the ordered and
    the total item pairs of two patients, zero across strata."""
    m, q = weights[:, 0], weights[:, 1]
    return np.einsum("bi,ij,bj->b", m, w, q) / np.einsum("bi,ij,bj->b", m, pairs, q)


def cluster_auc(scores: np.ndarray, member: np.ndarray, patient: np.ndarray,
                stratum: np.ndarray | None = None, *, rng: np.random.Generator,
                n_boot: int = N_BOOT, n_perm: int = N_PERM) -> AUCResult:
    """AUC of ``scores`` for ``member`` vs not, with a patient bootstrap CI and a permutation
    p-value (module docstring). ``patient`` names the cluster of every item (all items of a
    patient must share a label).

    ``stratum`` (default: one) pools strata the way a stratified Mann-Whitney statistic does:
    only member/non-member pairs of the same stratum are compared (AUC = Σ_s U_s / Σ_s n1_s·n0_s),
    so scores on different scales per stratum (FedMIA's, one target client each) cannot create
    or hide a difference, and the chance level stays 0.5 whatever the strata's member shares;
    the bootstrap resamples patients within stratum and class, the permutations stay within a
    stratum. A stratum with one member patient adds no member variability to the interval.
    """
    scores = np.asarray(scores, np.float64)
    member = np.asarray(member, bool)
    patient = np.asarray(patient).astype(str)
    stratum = (np.zeros(scores.size, int) if stratum is None
               else np.unique(np.asarray(stratum).astype(str), return_inverse=True)[1])
    names, inv = np.unique(patient, return_inverse=True)
    lab = np.zeros(names.size, bool)
    strat = np.zeros(names.size, int)
    for k in range(names.size):
        sel = inv == k
        if member[sel].any() != member[sel].all():
            raise ValueError(f"patient {names[k]} has both member and non-member items")
        lab[k], strat[k] = member[sel][0], stratum[sel][0]
    items = [scores[inv == k] for k in range(names.size)]
    sizes = np.array([len(x) for x in items], np.float64)
    n1, n0 = int(lab.sum()), int((~lab).sum())
    base = dict(n_member_patients=n1, n_nonmember_patients=n0,
                n_member_items=int(member.sum()), n_nonmember_items=int((~member).sum()))
    same = strat[:, None] == strat[None, :]
    pairs = np.outer(sizes, sizes) * same
    observed = np.stack([lab, ~lab]).astype(float)[None]
    if n1 == 0 or n0 == 0 or np.einsum("bi,ij,bj->b", observed[:, 0], pairs,
                                       observed[:, 1])[0] == 0:
        return AUCResult(np.nan, np.nan, np.nan, np.nan, **base)
    w = _pair_matrix(items) * same
    obs = float(_auc(w, pairs, observed)[0])
    lo = hi = np.nan
    if n1 >= MIN_PER_CLASS and n0 >= MIN_PER_CLASS:
        weights = np.zeros((n_boot, 2, names.size))
        for s in np.unique(strat):
            for g, idx in ((0, np.flatnonzero(lab & (strat == s))),
                           (1, np.flatnonzero(~lab & (strat == s)))):
                if idx.size == 0:
                    continue
                draws = rng.choice(idx, size=(n_boot, idx.size), replace=True)
                np.add.at(weights[:, g], (np.arange(n_boot)[:, None], draws), 1.0)
        boots = _auc(w, pairs, weights)
        lo, hi = (float(v) for v in np.quantile(boots, [0.025, 0.975]))
    perm_lab = np.repeat(lab[None], n_perm, axis=0)
    for s in np.unique(strat):
        cols = np.flatnonzero(strat == s)
        perm_lab[:, cols] = rng.permuted(perm_lab[:, cols], axis=1)
    perms = _auc(w, pairs, np.stack([perm_lab, ~perm_lab], axis=1).astype(float))
    p = float((1 + np.sum(perms >= obs - 1e-12)) / (1 + n_perm))
    return AUCResult(obs, lo, hi, p, **base)


def detectable_auc(n_members: int, n_nonmembers: int, alpha: float = 0.05,
                   power: float = 0.8) -> float:
    """The AUC a one-sided rank test at level ``alpha`` detects with probability ``power``, for
    ``n_members`` against ``n_nonmembers`` patients: ``0.5 + (z_{1-α} + z_{power}) · σ₀`` with
    the null standard deviation of the Mann-Whitney AUC, ``σ₀² = (n₁ + n₂ + 1) / (12 n₁ n₂)``
    (U / n₁n₂, with Var U = n₁n₂(n₁ + n₂ + 1)/12 under the null: Mann & Whitney, Ann. Math.
    Statist. 1947; the normal approximation, taking the variance under the alternative as the
    null's). Capped at 1: above it no AUC is detected
    reliably. The power statement of a membership result that is not detected."""
    if n_members < 1 or n_nonmembers < 1:
        raise ValueError(f"need at least one patient per class; got {n_members} and "
                         f"{n_nonmembers}")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must lie in (0, 1); got {alpha} and {power}")
    z = NormalDist()
    sd = ((n_members + n_nonmembers + 1) / (12 * n_members * n_nonmembers)) ** 0.5
    return min(1.0, 0.5 + (z.inv_cdf(1 - alpha) + z.inv_cdf(power)) * sd)
