"""Patient-level train/val/test splits (paper 000, "Datasets": 70/10/20 per training center).

The unit is the patient, never the slice: every slice of a patient lands in one subset, so test
metrics and membership labels are not contaminated by a patient's other slices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedaudit.runtime import derive_seed


def split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Subset sizes for ``n`` patients.

    Val and test get ``round(f * n)`` patients but at least one each once ``n >= 3`` (a center
    with three patients still needs a test patient and a validation patient); train keeps the
    rest, and is never empty.
    """
    if n < 1:
        raise ValueError("a center needs at least one patient to split")
    _, f_val, f_test = fractions
    n_test = int(round(f_test * n))
    n_val = int(round(f_val * n))
    if n >= 3:
        n_test, n_val = max(n_test, 1 if f_test > 0 else 0), max(n_val, 1 if f_val > 0 else 0)
    elif n == 2:
        n_test, n_val = min(1, max(n_test, 1 if f_test > 0 else 0)), 0
    else:
        n_test, n_val = 0, 0
    while n_test + n_val > n - 1:  # train is never empty
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def split_center(patients: Sequence[str], *, center: str, role: str, seed: int,
                 fractions: Sequence[float] = (0.7, 0.1, 0.2)) -> dict[str, list[str]]:
    """Split one center's patients; external centers are test only.

    Seeded by (seed, center) and independent of the order ``patients`` are given in, so adding a
    center or re-listing files never reshuffles another center's split.
    """
    ids = sorted(set(patients))
    if len(ids) != len(patients):
        raise ValueError(f"center {center}: duplicate patient ids in {list(patients)}")
    if role == "external":
        return {"train": [], "val": [], "test": ids}
    if role != "train":
        raise ValueError(f"center {center}: unknown role {role!r}")
    n_train, n_val, _ = split_sizes(len(ids), fractions)
    order = np.random.default_rng(derive_seed(seed, "split", center)).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    return {
        "train": sorted(shuffled[:n_train]),
        "val": sorted(shuffled[n_train:n_train + n_val]),
        "test": sorted(shuffled[n_train + n_val:]),
    }
