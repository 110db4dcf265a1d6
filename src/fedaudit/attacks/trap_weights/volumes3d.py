"""3-D reassembly of trap-weight slice reconstructions and its scoring (paper 002, section 2
"Adaptation to 3D Data" and Table 2).

In paper 002's 3-D attack the malicious server ships a preprocessor that cuts the client's
volume into 2-D slices and keeps "spatial mapping of the extracted data to the corresponding
slices"; the slices reconstructed from the trap layer's gradient are then "reassembled into one
3D volume" (missing slices black, Fig. 3) and scored with SSIM and PSNR (section 4, Table 2:
e.g. 34/40 slices, SSIM 0.81, PSNR 65.95 at batch size 8).

Two reassemblies are scored here:

* **oracle** (:func:`reassemble_oracle`): every recovered slice sits at its true index, as the
  server's preprocessing allows; missing slices are zeros (the paper's black slices);
* **without the oracle** (:func:`order_without_oracle`): a weaker server that gets slices without
  their index must order them itself; here by neighbour similarity (adjacent slices of a smooth
  anatomy are the most alike). How far this gets tells whether the slice index the paper's
  preprocessing keeps is needed for the 3-D threat at all.

Choices made here:

* 3-D SSIM is scikit-image's ``structural_similarity`` on the (D, H, W) stacks (uniform cubic
  window, sample covariance) with ``data_range`` given, in float64. The window must fit the
  stack: ``win_size = min(7, D, H, W)``, made odd by subtracting 1 if even, and reported as
  ``win_size_*``. With fewer than 3 slices no valid window exists (win_size 1 makes the sample
  covariance divide by zero) and the SSIM is NaN. A smaller window also shrinks the in-plane
  extent, so compare SSIMs only at the same ``win_size``.
* PSNR is ``10 log10(data_range**2 / MSE)`` over the stack, capped at 100 dB
  (:func:`fedaudit.attacks.trap_weights.matching.psnr_db`) so that exact stacks stay finite.
* Reconstructed slices with non-finite values count as not recovered.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import kendalltau
from skimage.metrics import structural_similarity

from fedaudit.attacks.trap_weights.matching import psnr_db

SSIM_WIN_3D = 7  # scikit-image's default window, shrunk to fit short stacks
_NN_CANDIDATES = 8  # nearest-neighbour paths refined by 2-opt in order_without_oracle


def _win_size(shape: Sequence[int]) -> int:
    """Largest odd window <= 7 fitting every axis (< 3 means no valid SSIM window)."""
    w = min(SSIM_WIN_3D, *shape)
    return w if w % 2 else w - 1


def _ssim_psnr(truth: np.ndarray, recon: np.ndarray, data_range: float) -> tuple[float, float, int]:
    """3-D SSIM (NaN when no window fits), capped PSNR and the window used, for two stacks."""
    if truth.shape[0] == 0:
        return math.nan, math.nan, 0
    t = truth.astype(np.float64)
    r = recon.astype(np.float64)
    psnr = psnr_db(float(np.mean((t - r) ** 2)), data_range)
    win = _win_size(t.shape)
    if win < 3:
        return math.nan, psnr, win
    ssim = float(structural_similarity(t, r, data_range=data_range, win_size=win))
    return ssim, psnr, win


def reassemble_oracle(slices: Mapping[int, np.ndarray], depth: int,
                      shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Place recovered slices at their known indices (paper 002's preprocessing keeps the slice
    index) in a (depth, H, W) float32 volume of zeros, the paper's black missing slices.

    Returns the volume and a (depth,) bool mask of the indices that hold a recovered slice.
    Slices with non-finite values are left out (zeros, mask False): a NaN slice is no recovery.
    Raises ``ValueError`` for an index outside ``[0, depth)`` or a slice of another shape.
    """
    h, w = (int(s) for s in shape)
    volume = np.zeros((depth, h, w), dtype=np.float32)
    mask = np.zeros(depth, dtype=bool)
    for idx, sl in slices.items():
        i = int(idx)
        if not 0 <= i < depth:
            raise ValueError(f"slice index {idx} outside [0, {depth})")
        arr = np.asarray(sl)
        if arr.shape != (h, w):
            raise ValueError(f"slice {idx} has shape {arr.shape}, expected {(h, w)}")
        if np.isfinite(arr).all():
            volume[i] = arr
            mask[i] = True
    return volume, mask


def _path_length(d: np.ndarray, path: np.ndarray) -> float:
    return float(d[path[:-1], path[1:]].sum())


def _nearest_neighbour_path(d: np.ndarray, start: int) -> np.ndarray:
    """Greedy path from ``start``, always stepping to the closest unvisited slice."""
    n = d.shape[0]
    visited = np.zeros(n, dtype=bool)
    path = np.empty(n, dtype=np.int64)
    path[0] = cur = start
    visited[start] = True
    for k in range(1, n):
        row = np.where(visited, np.inf, d[cur])
        cur = int(np.argmin(row))
        path[k] = cur
        visited[cur] = True
    return path


def _two_opt(d: np.ndarray, path: np.ndarray, max_passes: int = 1000) -> np.ndarray:
    """2-opt for an open path: reverse ``path[i:j+1]`` while that shortens it. An open path has
    no closing edge, so reversing a prefix or suffix (one edge replaced) is a move too; this is
    what repairs a nearest-neighbour path that started mid-volume and had to jump back."""
    p = path.copy()
    n = len(p)
    for _ in range(max_passes):
        improved = False
        for i in range(n - 1):
            js = np.arange(i + 1, n)
            delta = np.zeros(len(js))
            if i > 0:
                delta += d[p[i - 1], p[js]] - d[p[i - 1], p[i]]
            inner = js < n - 1
            jj = js[inner]
            delta[inner] += d[p[i], p[jj + 1]] - d[p[jj], p[jj + 1]]
            if i == 0:
                delta[js == n - 1] = 0.0  # reversing the whole path changes nothing
            k = int(np.argmin(delta))
            if delta[k] < -1e-12 * max(1.0, float(d.max())):
                j = int(js[k])
                p[i:j + 1] = p[i:j + 1][::-1]
                improved = True
        if not improved:
            break
    return p


def order_without_oracle(slices: Sequence[np.ndarray]) -> list[int]:
    """Order unlabelled slices (indices into ``slices``) so that neighbours are alike: a short
    Hamiltonian path through the slices, for a server that does not know the slice indices.

    Distance: root-mean-square difference between slices. Not 1 - normalised correlation: that
    ignores intensity, so slices that differ mostly in brightness along z (e.g. through a
    separable blob, where every slice is a scaled copy of one profile) would all look identical.

    Path: nearest-neighbour paths from every start slice, the shortest few refined by 2-opt
    (open-path moves), the shortest result kept; ties go to the lowest index, so the result is
    deterministic. Exact for slices sampled densely from a smooth volume with no repeated
    cross-section; a heuristic otherwise (finding the shortest path is NP-hard).

    The direction of a path is unidentifiable from the slices alone (head-to-feet and
    feet-to-head are equally short): the result may come out reversed, and scorers must score
    both directions (:func:`score_volume` keeps the better one).

    Raises ``ValueError`` for slices of different shapes or non-finite values.
    """
    n = len(slices)
    if n <= 2:
        return list(range(n))
    x = np.stack([np.asarray(s, dtype=np.float64).ravel() for s in slices])
    if not np.isfinite(x).all():
        raise ValueError("slices contain non-finite values")
    d = cdist(x, x, "euclidean") / math.sqrt(x.shape[1])
    paths = [_nearest_neighbour_path(d, s) for s in range(n)]
    lengths = np.array([_path_length(d, p) for p in paths])
    best, best_len = paths[0], math.inf
    for s in np.argsort(lengths, kind="stable")[:_NN_CANDIDATES]:
        p = _two_opt(d, paths[int(s)])
        length = _path_length(d, p)
        if length < best_len - 1e-12:
            best, best_len = p, length
    return [int(i) for i in best]


def score_volume(true_volume: np.ndarray, recovered: Mapping[int, np.ndarray],
                 data_range: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Score recovered slices (true index -> reconstructed slice) of one volume (D, H, W), as
    paper 002's Table 2 does and beyond.

    Keys:

    * ``depth``, ``slices_recovered``, ``recovered_fraction`` (Table 2's "34/40");
    * ``ssim_3d_recovered``, ``psnr_3d_recovered``, ``win_size_recovered``: 3-D SSIM and PSNR of
      the stack of recovered slices against the same true slices, both in true order (what
      Table 2 averages over "reconstructed slices"); the stack skips missing slices, so its
      z-windows can span gaps;
    * ``ssim_3d_oracle``, ``psnr_3d_oracle``, ``win_size_oracle``: the oracle-reassembled full
      volume (:func:`reassemble_oracle`, missing slices zero) against the full true volume;
    * ``ssim_3d_no_oracle``, ``psnr_3d_no_oracle``: the recovered slices put in the order
      :func:`order_without_oracle` finds (fed in a ``seed``-shuffled order, so that the input
      order cannot leak the answer), against the true slices in true order; since a path's
      direction is unidentifiable, both directions are scored and the better (higher SSIM; lower
      MSE when SSIM is NaN) is kept, the evaluator granting the attacker the orientation;
    * ``order_kendall_tau``: |Kendall's tau| between the recovered order and the true order
      (absolute, for the same reason); ``order_adjacent_fraction``: share of consecutive pairs
      in the recovered order that are neighbours in true order among the recovered slices.

    SSIMs need at least 3 slices (see the module docstring); PSNRs need one; ordering metrics
    need two. Undefined values are NaN; no count of recovered slices raises.
    Non-finite reconstructed slices count as not recovered.
    """
    truth = np.asarray(true_volume, dtype=np.float64)
    if truth.ndim != 3:
        raise ValueError(f"true_volume must be (D, H, W), got shape {truth.shape}")
    if not np.isfinite(truth).all():
        raise ValueError("true_volume contains non-finite values")
    depth, h, w = truth.shape
    _, mask = reassemble_oracle(recovered, depth, (h, w))  # validates indices and shapes
    idx = np.flatnonzero(mask)  # recovered true indices, ascending
    k = len(idx)
    # Scored from float64 copies (the oracle volume is float32), so exact slices score exactly.
    by_index = {int(i): s for i, s in recovered.items()}
    rec = np.zeros((k, h, w))
    for r, i in enumerate(idx):
        rec[r] = by_index[int(i)]
    true_rec = truth[idx]
    out: dict[str, Any] = {"depth": depth, "slices_recovered": k,
                           "recovered_fraction": k / depth if depth else math.nan}
    ssim, psnr, win = _ssim_psnr(true_rec, rec, data_range)
    out.update(ssim_3d_recovered=ssim, psnr_3d_recovered=psnr, win_size_recovered=win)
    oracle = np.zeros_like(truth)
    oracle[idx] = rec
    ssim, psnr, win = _ssim_psnr(truth, oracle, data_range)
    out.update(ssim_3d_oracle=ssim, psnr_3d_oracle=psnr, win_size_oracle=win)

    nan = math.nan
    out.update(ssim_3d_no_oracle=nan, psnr_3d_no_oracle=nan, order_kendall_tau=nan,
               order_adjacent_fraction=nan)
    if k == 0:
        return out
    perm = np.random.default_rng(seed).permutation(k)
    order = order_without_oracle([rec[i] for i in perm])
    pos = perm[np.asarray(order, dtype=np.int64)]  # true-order rank of each slice, path order
    scored = []
    for direction in (pos, pos[::-1]):
        stack = rec[direction]
        ssim, psnr, _ = _ssim_psnr(true_rec, stack, data_range)
        mse = float(np.mean((stack - true_rec) ** 2))
        scored.append(((-math.inf if math.isnan(ssim) else ssim, -mse), ssim, psnr))
    _, ssim, psnr = max(scored, key=lambda t: t[0])
    out.update(ssim_3d_no_oracle=ssim, psnr_3d_no_oracle=psnr)
    if k >= 2:
        out["order_kendall_tau"] = abs(float(kendalltau(np.arange(k), pos).statistic))
        out["order_adjacent_fraction"] = float(np.mean(np.abs(np.diff(pos)) == 1))
    return out

