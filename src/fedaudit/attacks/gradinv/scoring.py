"""Evaluator-side scoring of the gradient-inversion suite, as paper 003 scores its Table II.

* A reconstruction is scored against its true slice by SSIM, MSE and PSNR after the
  least-squares gain/offset fit inside the mask that DLG's scoring uses
  (:func:`fedaudit.attacks.dlg.results.fit_gain_offset`; why: BatchNorm in train mode hides the
  input's scale), SSIM averaged over mask pixels (the whole image for the classifier, whose
  attacker has no mask). Raw SSIM (no fit) is kept beside it.
* **ASR** (paper 003, "Attack Success Rate", after Wei et al. 2020): the share of attacked
  slices reconstructed at SSIM >= 0.9; the mean SSIM / MSE / PSNR of Table II are over the
  successful attacks only ("failure cases ... might cause bias").
* A batch of B > 1 slices gives B unordered reconstructions: they are matched to the true slices
  by the optimal one-to-one assignment on fitted SSIM that the trap-weight scoring uses
  (:func:`fedaudit.attacks.assignment.assign_one_to_one`), successes first.
* **Null** (the trivial reference): each attacked slice is also scored against a different
  slice of the same center, fitted the same way -- what "looking like a brain slice of this
  center" earns without any leak. An ASR is read against the null's.
"""

from __future__ import annotations

import math

import numpy as np

from fedaudit.attacks.assignment import assign_one_to_one
from fedaudit.attacks.dlg.results import fit_gain_offset


def _ssim_map(g: np.ndarray, r: np.ndarray) -> np.ndarray:
    from skimage.metrics import structural_similarity

    _, smap = structural_similarity(g, r, data_range=1.0, full=True)
    return smap


def slice_scores(truth: np.ndarray, reconstruction: np.ndarray, mask: np.ndarray
                 ) -> dict[str, float]:
    """One 2-D slice: ``ssim_raw``; after the gain/offset fit inside ``mask``: ``ssim``,
    ``mse``, ``psnr`` (dB, data range 1; inf for an exact match), ``gain``. A non-finite
    reconstruction scores SSIM -1 and MSE inf (a failure, never a crash)."""
    g = np.asarray(truth, np.float64)
    r = np.asarray(reconstruction, np.float64)
    k = np.asarray(mask, bool)
    if not g.shape == r.shape == k.shape or g.ndim != 2:
        raise ValueError(f"slice shapes differ or are not 2-D: {g.shape}, {r.shape}, {k.shape}")
    if not k.any():
        raise ValueError("a slice's mask is empty: nothing to score")
    if not np.isfinite(r[k]).all():
        return {"ssim_raw": -1.0, "ssim": -1.0, "mse": math.inf, "psnr": -math.inf,
                "gain": math.nan}
    raw = float(_ssim_map(g, np.where(np.isfinite(r), r, 0.0))[k].mean())
    gain, offset = fit_gain_offset(g, r, k)
    fitted = np.where(k, gain * r + offset, r)
    mse = float(np.mean((g[k] - fitted[k]) ** 2))
    return {"ssim_raw": raw, "ssim": float(_ssim_map(g, fitted)[k].mean()), "mse": mse,
            "psnr": math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse), "gain": gain}


def match_batch(truth: np.ndarray, recon: np.ndarray, mask: np.ndarray,
                threshold: float = 0.9) -> tuple[list[int], list[dict[str, float]]]:
    """Score B reconstructions ``[B, H, W]`` of a batch against its B true slices: for true
    slice j, the index of the reconstruction assigned to it and its scores (fitted inside
    true slice j's mask). B = 1 is the identity."""
    b = truth.shape[0]
    scores = [[slice_scores(truth[j], recon[i], mask[j]) for j in range(b)] for i in range(b)]
    if b == 1:
        return [0], [scores[0][0]]
    rows, cols = assign_one_to_one(np.array([[s["ssim"] for s in row] for row in scores]),
                                   threshold)
    assigned = dict(zip(cols.tolist(), rows.tolist(), strict=True))
    return ([assigned[j] for j in range(b)], [scores[assigned[j]][j] for j in range(b)])


def null_partner(n: int, groups: list[str], seed: int) -> list[int]:
    """For each of ``n`` attacked slices, the index of another attacked-or-candidate slice to
    score it against: a seeded draw among the slices of a *different* patient (``groups``)
    where there is one, else any other slice."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        others = [j for j in range(len(groups)) if groups[j] != groups[i]]
        if not others:
            others = [j for j in range(len(groups)) if j != i]
        out.append(int(rng.choice(others)) if others else i)
    return out
