"""Crediting reconstructions to true slices, one to one: shared by every reconstruction attack
(the trap-weight server, the gradient-inversion suite).

Source: paper 003's attack success rate (ASR): the share of attacked images reconstructed at
SSIM >= 0.9 (:data:`ASR_SSIM_THRESHOLD`). The optimal assignment is the Hungarian method
(Kuhn 1955) as ``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

ASR_SSIM_THRESHOLD = 0.9  # paper 003, ASR: a reconstruction with SSIM >= 0.9 is a success


def assign_one_to_one(ssim_matrix: np.ndarray,
                      threshold: float = ASR_SSIM_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one assignment of reconstructions (rows) to true slices (columns) on an
    SSIM matrix: returns matched (row indices, column indices), ``min(M, N)`` pairs.

    Lexicographic objective: first the most pairs with SSIM >= ``threshold`` (the ASR), then the
    highest total SSIM among those. Plain maximal total SSIM can trade one success for a larger sum
    of failures (rows 0.99 / 0.92 and 0.90 / 0.89 give 1 success instead of 2); greedy best-per-
    slice can credit one reconstruction twice. Each SSIM lies in [-1, 1], so a sum over
    ``<= min(M, N)`` pairs spans less than ``2 min(M, N)``, and a bonus of ``2 min(M, N) + 1``
    per success outweighs any difference in total SSIM.
    """
    s = np.asarray(ssim_matrix, dtype=np.float64)
    if s.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    bonus = 2.0 * min(s.shape) + 1.0
    rows, cols = linear_sum_assignment(s + bonus * (s >= threshold), maximize=True)
    return rows.astype(np.int64), cols.astype(np.int64)
