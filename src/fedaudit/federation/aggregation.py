"""Server-side aggregation rules over client updates.

Every rule takes the clients' updates as lists of float arrays (one list per client, same shapes)
and returns one list. They are translation-equivariant (``rule(w_global + Δ_k) = w_global +
rule(Δ_k)``), which is why the federation may exchange updates Δ_k = w_k − w_global instead of
weights without changing any rule's result (see :mod:`fedaudit.federation.strategy`).

Sources:
- ``fedavg``: McMahan et al., "Communication-Efficient Learning of Deep Networks from
  Decentralized Data", AISTATS 2017, Algorithm 1 (weights n_k / Σ n).
- ``fedmedian``: Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal Statistical
  Rates", ICML 2018, Definition 1 (coordinate-wise median); paper 000, "Data Poisoning".
- ``trimmed_mean``: Yin et al. 2018, Definition 2 (coordinate-wise β-trimmed mean).
- ``krum``: Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant Gradient
  Descent", NeurIPS 2017, Section 4 (score = sum of squared distances to the n − f − 2 nearest
  neighbours; the client with the lowest score is selected). Its guarantee (Proposition 1)
  needs n > 2f + 2, so fewer clients are refused rather than run without it.

With few clients the trimmed mean can trim everything but the middle value(s): then it *is* the
coordinate-wise median (:func:`trims_to_median`), which the logs and tables say.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Arrays = list[np.ndarray]

def _check(updates: Sequence[Arrays]) -> None:
    if not updates:
        raise ValueError("aggregation needs at least one client update")
    shapes = [tuple(a.shape for a in u) for u in updates]
    if any(s != shapes[0] for s in shapes):
        raise ValueError("client updates have different array shapes; were they made from "
                         "the same model?")


def fedavg(updates: Sequence[Arrays], num_examples: Sequence[int]) -> Arrays:
    """Example-weighted mean Σ_k (n_k / Σ n) Δ_k, accumulated in float64."""
    _check(updates)
    n = np.asarray(num_examples, np.float64)
    if n.shape != (len(updates),) or np.any(n <= 0):
        raise ValueError(f"num_examples must be one positive count per client, got {list(n)}")
    w = n / n.sum()
    return [
        sum(wk * u[i].astype(np.float64) for wk, u in zip(w, updates, strict=True)).astype(
            updates[0][i].dtype)
        for i in range(len(updates[0]))
    ]


def fedmedian(updates: Sequence[Arrays]) -> Arrays:
    """Coordinate-wise median (the mean of the two middle values for an even client count)."""
    _check(updates)
    return [np.median(np.stack([u[i] for u in updates]), axis=0).astype(updates[0][i].dtype)
            for i in range(len(updates[0]))]


def trimmed_mean(updates: Sequence[Arrays], beta: float) -> Arrays:
    """Coordinate-wise mean after dropping the ⌊β·n⌋ largest and smallest values."""
    _check(updates)
    if not 0.0 <= beta < 0.5:
        raise ValueError(f"trimmed_mean beta must be in [0, 0.5), got {beta}")
    n = len(updates)
    k = int(np.floor(beta * n))
    out = []
    for i in range(len(updates[0])):
        stacked = np.sort(np.stack([u[i] for u in updates]), axis=0)
        out.append(stacked[k:n - k].mean(axis=0).astype(updates[0][i].dtype))
    return out


def trims_to_median(n: int, beta: float) -> bool:
    """True when the β-trimmed mean of ``n`` values keeps only the middle one or two, i.e. is
    exactly the coordinate-wise median (e.g. n = 4, β = 0.25)."""
    return n - 2 * int(np.floor(beta * n)) <= 2


def krum_guard(n: int, num_malicious: int) -> None:
    """Refuse a federation too small for Krum's guarantee (Blanchard et al. 2017, Prop. 1:
    n > 2f + 2)."""
    if num_malicious < 0 or n <= 2 * num_malicious + 2:
        raise ValueError(
            f"aggregation 'krum' needs n > 2f + 2 clients (Blanchard et al. 2017, Proposition "
            f"1); n={n}, f={num_malicious}: with this federation size Krum gives no guarantee "
            f"against {num_malicious} malicious client(s) (aggregations.krum.f)")


def krum_scores(updates: Sequence[Arrays], num_malicious: int) -> np.ndarray:
    """Krum score of every client: sum of squared distances to its n − f − 2 nearest others."""
    _check(updates)
    n = len(updates)
    krum_guard(n, num_malicious)
    m = n - num_malicious - 2
    flat = np.stack([np.concatenate([a.ravel().astype(np.float64) for a in u]) for u in updates])
    sq = np.sum(flat**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * flat @ flat.T, 0.0)
    scores = np.empty(n)
    for k in range(n):
        others = np.sort(np.delete(d2[k], k))
        scores[k] = others[:m].sum()
    return scores


def krum(updates: Sequence[Arrays], num_malicious: int) -> tuple[Arrays, int]:
    """The update of the client with the lowest Krum score, and that client's index."""
    scores = krum_scores(updates, num_malicious)
    best = int(np.argmin(scores))
    return [a.copy() for a in updates[best]], best


# The catalog's uniform signature (fedaudit.federation.aggregators): ``rule(updates,
# num_examples, **params) -> (aggregate, metrics worth logging)``.


def fedavg_rule(updates: Sequence[Arrays], num_examples: Sequence[int]
                ) -> tuple[Arrays, dict[str, float]]:
    return fedavg(updates, num_examples), {}


def fedmedian_rule(updates: Sequence[Arrays], num_examples: Sequence[int]
                   ) -> tuple[Arrays, dict[str, float]]:
    return fedmedian(updates), {}


def trimmed_mean_rule(updates: Sequence[Arrays], num_examples: Sequence[int], *, beta: float
                      ) -> tuple[Arrays, dict[str, float]]:
    return trimmed_mean(updates, beta), {}


def krum_rule(updates: Sequence[Arrays], num_examples: Sequence[int], *, f: int
              ) -> tuple[Arrays, dict[str, float]]:
    agg, best = krum(updates, f)
    return agg, {"krum_selected": float(best)}


def krum_check(n: int, *, f: int) -> None:
    krum_guard(n, f)
