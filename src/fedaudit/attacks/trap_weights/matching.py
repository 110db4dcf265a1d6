"""Evaluator-side scoring of trap-weight reconstructions: which true slice did each
reconstruction recover, and how well.

The malicious server of paper 002 (section 2, "trap weights") gets back from the attack layer's
gradient an unordered, unlabelled set of images: some are exact copies of single client slices,
others are mixtures of several slices that hit the same neuron, and some neurons fire for no
slice at all. To score the attack, the evaluator (who holds the client's true slices) must first
decide which reconstruction belongs to which true slice, then measure it.

Sources:

* paper 002, section 4 ("Results and Discussion"): 2-D reconstructions are scored with MSE and
  SSIM, 3-D ones with SSIM and PSNR (preferred over MSE "for its ability to consider the dynamic
  range of pixel values");
* paper 003 (MedPFL), "Attack Success Rate": ASR is the share of attacked images that were
  successfully reconstructed, a reconstruction counting as successful when its SSIM with the
  original is >= 0.9; its Table II then averages SSIM and MSE over the successful attacks only,
  because failure cases would bias those means. :meth:`MatchResult.summary` reports these.

Choices made here (the papers leave them open):

* **One-to-one matching.** Each true slice is credited with at most one reconstruction and each
  reconstruction with at most one true slice, by an optimal assignment (Hungarian algorithm,
  :func:`scipy.optimize.linear_sum_assignment`) on the pairwise SSIM matrix. A greedy "best
  reconstruction per true slice" can credit one reconstruction to several near-identical slices
  (adjacent slices of a volume), inflating the ASR. The assignment first maximises the number of
  pairs with SSIM >= threshold (the ASR itself), then the total SSIM among such assignments: plain
  maximal total SSIM can, in rare cases, trade one success for a larger sum of failures.
* **SSIM** is scikit-image's ``structural_similarity`` with its defaults (7x7 uniform window,
  sample covariance, K1 = 0.01, K2 = 0.03, border of 3 pixels cropped) and ``data_range`` given
  explicitly, computed in float64. The pairwise matrix uses the vectorised
  :func:`pairwise_ssim`, which reproduces that function (tested to 1e-6; ~1e-15 in practice).
* **PSNR** is ``10 log10(data_range**2 / MSE)`` capped at :data:`PSNR_CAP_DB` (100 dB): an exact
  reconstruction has MSE 0 and an infinite PSNR, which would make every mean infinite. 100 dB is
  an RMS error of 1e-5 of the data range, far below anything visible; float32 round-off of an
  exact copy (~150 dB) reads as 100 dB too.
* **Non-finite reconstructions** (NaN / inf anywhere, e.g. a neuron whose gradient was 0 divided
  by 0) get SSIM -1 (the minimum) in the matrix and take no part in the assignment: they can
  neither be credited nor use up a true slice.
* A blank reconstruction is scored like any other. Note that SSIM of a blank image against a slice
  with a large zero background is high in the background windows, so the 0.9 criterion is only as
  strict as the slices' content allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedaudit.attacks.assignment import assign_one_to_one

PSNR_CAP_DB = 100.0  # PSNR reported for MSE == 0 (and the ceiling of every PSNR)
SSIM_WIN = 7  # scikit-image's default uniform window (gaussian_weights=False)
_K1, _K2 = 0.01, 0.03  # scikit-image's (and Wang et al. 2004's) stability constants
_CHUNK_BYTES = 64 * 2**20  # bound on pairwise_ssim's per-block (M, N) result and row buffers
_CACHE_BYTES = 2**20  # per-pass buffer of the per-pair arithmetic: about a core's L2 share


def psnr_db(mse: float, data_range: float = 1.0) -> float:
    """PSNR in dB from an MSE, capped at :data:`PSNR_CAP_DB` so exact reconstructions (MSE 0)
    give a finite number that means can average. NaN MSE gives NaN."""
    if not math.isfinite(mse):
        return math.nan
    if mse <= 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(data_range**2 / mse))


def _box_matrix(n: int, win: int) -> np.ndarray:
    """(n - win + 1, n) matrix whose rows average ``win`` consecutive samples: the uniform
    filter restricted to the positions whose window lies inside the image. Those are exactly the
    positions scikit-image keeps after cropping ``(win - 1) // 2`` pixels, so the boundary mode
    of its ``uniform_filter`` never matters."""
    out = np.zeros((n - win + 1, n))
    for i in range(n - win + 1):
        out[i, i:i + win] = 1.0 / win
    return out


def _local_moments(x: np.ndarray, cov_norm: float) -> tuple[np.ndarray, np.ndarray]:
    """Local mean and (sample) variance of ``x`` (K, H, W) over every 7x7 window inside the
    image, (K, H', W') each, in float64 (the variance is a difference of close numbers)."""
    bh, bw = _box_matrix(x.shape[1], SSIM_WIN), _box_matrix(x.shape[2], SSIM_WIN)
    ux = np.matmul(bh, x @ bw.T)
    vx = cov_norm * (np.matmul(bh, (x * x) @ bw.T) - ux * ux)
    return ux, vx


def _row_windows(x: np.ndarray, row: int) -> np.ndarray:
    """The 7x7 windows of ``x`` (K, H, W) whose top row is ``row``, flattened pixel-major:
    (W', K, 49)."""
    win = np.lib.stride_tricks.sliding_window_view(x[:, row:row + SSIM_WIN], SSIM_WIN, axis=2)
    # (K, 7, W', 7) -> (W', K, 7, 7)
    return win.transpose(2, 0, 1, 3).reshape(win.shape[2], x.shape[0], SSIM_WIN**2)


def _pairwise_ssim_block(a: np.ndarray, b: np.ndarray, data_range: float) -> np.ndarray:
    """:func:`pairwise_ssim` of finite float64 stacks ``a`` (M, H, W) and ``b`` (N, H, W).

    Window row by window row and, within a row, a few pixels at a time, so that every
    (pixels, M, N) buffer stays in the CPU's cache: one buffer over all of a chunk's pixels made
    the per-pair passes and the rank-2 and rank-4 products memory-bound (450 reconstructions
    against 320 slices at 64²: 5.4 s against 2.9 s on one core, measured)."""
    m, n = a.shape[0], b.shape[0]
    np_ = SSIM_WIN**2
    cov_norm = np_ / (np_ - 1)  # scikit-image's use_sample_covariance=True
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    ua, va = _local_moments(a, cov_norm)
    ub, vb = _local_moments(b, cov_norm)
    hv, wv = ua.shape[1:]
    a_scaled = a * (2.0 * cov_norm / np_)
    group = max(1, min(wv, _CACHE_BYTES // (8 * m * n)))  # pixels per pass
    # Per window row, pixel-major. A2 = 2 cov_norm (mean(x y) - ux uy) + C2 is the inner product
    # of augmented window vectors [x-window scaled, ux, 1] . [y-window, -2 cov_norm uy, C2].
    xa, xb = np.empty((wv, m, np_ + 2)), np.empty((wv, np_ + 2, n))
    xa[:, :, np_ + 1] = 1.0
    xb[:, np_ + 1, :] = c2
    # A1 = 2 ux uy + C1 and B1 B2 = (ux^2 + C1 + uy^2)(vx + C2 + vy): rank-2 and rank-4
    # products of per-image factors, all terms of B1 B2 non-negative (no cancellation).
    la, lb = np.empty((wv, m, 2)), np.empty((wv, 2, n))
    da, db = np.empty((wv, m, 4)), np.empty((wv, 4, n))
    la[:, :, 1] = c1
    lb[:, 1, :] = 1.0
    da[:, :, 3] = 1.0
    db[:, 0, :] = 1.0
    a2, a1, den = (np.empty((group, m, n)) for _ in range(3))
    total = np.zeros((m, n))
    for row in range(hv):
        ua_r, va_r = ua[:, row].T, va[:, row].T  # (W', M)
        ub_r, vb_r = ub[:, row].T, vb[:, row].T  # (W', N)
        xa[:, :, :np_] = _row_windows(a_scaled, row)
        xa[:, :, np_] = ua_r
        xb[:, :np_, :] = _row_windows(b, row).transpose(0, 2, 1)
        xb[:, np_, :] = -2.0 * cov_norm * ub_r
        la[:, :, 0] = 2.0 * ua_r
        lb[:, 0, :] = ub_r
        sa, sb = ua_r**2 + c1, va_r + c2  # image a's parts of B1, B2
        ta, tb = ub_r**2, vb_r  # image b's parts
        da[:, :, 0], da[:, :, 1], da[:, :, 2] = sa * sb, sa, sb
        db[:, 1, :], db[:, 2, :], db[:, 3, :] = tb, ta, ta * tb
        for j0 in range(0, wv, group):
            j1 = min(j0 + group, wv)
            g = j1 - j0
            s_, l_, d_ = a2[:g], a1[:g], den[:g]
            np.matmul(xa[j0:j1], xb[j0:j1], out=s_)
            np.matmul(la[j0:j1], lb[j0:j1], out=l_)
            np.matmul(da[j0:j1], db[j0:j1], out=d_)
            l_ /= d_
            s_ *= l_  # S = A1 A2 / (B1 B2) per pixel and pair
            total += s_.sum(axis=0) if g > 1 else s_[0]
    return total / (hv * wv)


def pairwise_ssim(recons: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """SSIM of every reconstruction against every true image, shape (M, N).

    Equal to ``skimage.metrics.structural_similarity(truth[j], recons[i], data_range=...)`` with
    its defaults (7x7 uniform window, sample covariance, 3-pixel border cropped), in float64, but
    vectorised, because calling scikit-image M x N times (76,800 calls for M = 600, N = 128 at
    64x64) takes about 20 s. Per-image local means and variances are computed once; the only
    per-pair local quantity, ``A2 = 2 cov(x, y) + C2``, comes out of one batched matrix product
    over the 7x7 windows (augmented with the mean and constant terms); the luminance numerator
    ``A1`` and the denominator ``B1 B2`` are low-rank products of per-image factors. Agreement
    with scikit-image is tested to 1e-6 on random images (it is ~1e-15 in practice).

    The work is thousands of small matrix products: OpenBLAS threads competing with other busy
    processes made it 10x slower on a loaded 2-core machine (measured), so the rules that call it
    run with one BLAS thread (their ``threads``, :func:`fedaudit.runtime.set_threads`).

    Rows of non-finite reconstructions are set to -1 (SSIM's minimum) without being computed.
    Images must be at least 7x7; ``truth`` must be finite.
    """
    a = np.asarray(recons, dtype=np.float64)
    b = np.asarray(truth, dtype=np.float64)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"need (M, H, W) and (N, H, W) stacks, got {a.shape} and {b.shape}")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    h, w = a.shape[1:]
    if min(h, w) < SSIM_WIN:
        raise ValueError(f"images must be at least {SSIM_WIN}x{SSIM_WIN}, got {h}x{w}")
    if not np.isfinite(b).all():
        raise ValueError("truth contains non-finite values")
    out = np.full((a.shape[0], b.shape[0]), -1.0)
    finite = np.flatnonzero(np.isfinite(a).all(axis=(1, 2)))
    if finite.size == 0 or b.shape[0] == 0:
        return out
    # Blocks of reconstructions bound the (M, N) sums and the window rows (W', M, 51).
    block = max(1, _CHUNK_BYTES // (8 * (w - SSIM_WIN + 1) * max(b.shape[0], SSIM_WIN**2 + 2)))
    for s in range(0, finite.size, block):
        rows = finite[s:s + block]
        out[rows] = _pairwise_ssim_block(a[rows], b, data_range)
    return out


@dataclass
class MatchResult:
    """Per true slice (length N arrays, in the order of ``truth``): which reconstruction was
    credited to it and how close it is.

    ``recon_index`` is -1 where no reconstruction was assigned (fewer finite reconstructions than
    true slices); ``ssim``, ``mse`` and ``psnr`` are NaN there. ``psnr`` is capped at
    :data:`PSNR_CAP_DB`. ``recovered`` is ``ssim >= threshold`` (paper 003's success criterion).
    ``ssim_matrix`` (M, N) is the pairwise SSIM the assignment was made on, kept for inspection.
    """

    recon_index: np.ndarray
    ssim: np.ndarray
    mse: np.ndarray
    psnr: np.ndarray
    recovered: np.ndarray
    threshold: float
    ssim_matrix: np.ndarray

    def summary(self) -> dict[str, Any]:
        """Headline numbers: ``attacked`` (N true slices), ``matched``, ``recovered`` (count),
        ``recovered_fraction`` (paper 003's ASR), ``mean_ssim_recovered`` /
        ``mean_mse_recovered`` / ``mean_psnr_recovered`` over the recovered slices only (paper
        003 Table II; NaN when none), and ``mean_ssim_all`` over all N true slices, where a slice
        with no reconstruction counts as SSIM 0 (no similarity) rather than being skipped, so this
        mean cannot improve by reconstructing less."""
        n = int(self.ssim.shape[0])
        rec = self.recovered
        k = int(rec.sum())

        def mean_rec(x: np.ndarray) -> float:
            return float(np.mean(x[rec])) if k else math.nan

        return {
            "attacked": n,
            "matched": int((self.recon_index >= 0).sum()),
            "recovered": k,
            "recovered_fraction": k / n if n else math.nan,
            "mean_ssim_recovered": mean_rec(self.ssim),
            "mean_mse_recovered": mean_rec(self.mse),
            "mean_psnr_recovered": mean_rec(self.psnr),
            "mean_ssim_all": float(np.mean(np.nan_to_num(self.ssim, nan=0.0))) if n else math.nan,
        }


def match_reconstructions(recons: np.ndarray, truth: np.ndarray, threshold: float = 0.9,
                          data_range: float = 1.0) -> MatchResult:
    """Credit reconstructions (M, H, W) to true slices (N, H, W) one-to-one and score them.

    Sources: paper 002 section 4 (SSIM, MSE, PSNR); paper 003's ASR (share of attacked images
    reconstructed at SSIM >= 0.9, ``threshold``). See the module docstring for the choices:
    optimal assignment on the pairwise SSIM (maximising first the number of successes, then the
    total SSIM) so one reconstruction is never credited twice; PSNR capped at
    :data:`PSNR_CAP_DB` (100 dB) when MSE is 0; non-finite reconstructions never matched.

    ``M`` may be 0 (the attack reconstructed nothing: every slice is unrecovered) or larger than
    ``N`` (neurons that fired for mixtures or noise: the surplus stays unassigned).
    """
    b = np.asarray(truth, dtype=np.float64)
    if b.ndim != 3:
        raise ValueError(f"truth must be an (N, H, W) stack, got shape {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError("truth contains non-finite values")
    a = np.asarray(recons, dtype=np.float64)
    if a.size == 0:
        a = a.reshape((0, *b.shape[1:]))
    if a.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"recons must be (M, {b.shape[1]}, {b.shape[2]}), got {a.shape}")
    n = b.shape[0]
    sim = pairwise_ssim(a, b, data_range)
    recon_index = np.full(n, -1, dtype=np.int64)
    ssim = np.full(n, np.nan)
    mse = np.full(n, np.nan)
    psnr = np.full(n, np.nan)
    usable = np.flatnonzero(np.isfinite(a).all(axis=(1, 2)))
    if usable.size and n:
        rows, cols = assign_one_to_one(sim[usable], threshold)
        for r, c in zip(rows, cols, strict=True):
            i = int(usable[r])
            recon_index[c] = i
            ssim[c] = sim[i, c]
            mse[c] = float(np.mean((a[i] - b[c]) ** 2))
            psnr[c] = psnr_db(mse[c], data_range)
    recovered = np.nan_to_num(ssim, nan=-np.inf) >= threshold
    return MatchResult(recon_index=recon_index, ssim=ssim, mse=mse, psnr=psnr,
                       recovered=recovered, threshold=float(threshold), ssim_matrix=sim)
