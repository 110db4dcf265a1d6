"""Scoring of trap-weight reconstructions (paper 002; ASR of paper 003): one-to-one matching of
reconstructions to true slices (fedaudit.attacks.trap_weights.matching) and the 3-D reassembly
with and without the slice-index oracle (fedaudit.attacks.trap_weights.volumes3d)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.stats import kendalltau
from skimage.metrics import structural_similarity

from fedaudit.attacks.trap_weights.matching import (
    PSNR_CAP_DB,
    assign_one_to_one,
    match_reconstructions,
    pairwise_ssim,
    psnr_db,
)
from fedaudit.attacks.trap_weights.volumes3d import (
    order_without_oracle,
    reassemble_oracle,
    score_volume,
)


def textures(rng: np.random.Generator, n: int, size: int = 64) -> np.ndarray:
    """``n`` distinct smooth random images in [0.1, 0.9], stand-ins for MR slices (no zero
    background, so a blank image is not accidentally similar to them)."""
    x = np.stack([gaussian_filter(rng.random((size, size)), 2.0) for _ in range(n)])
    lo = x.min(axis=(1, 2), keepdims=True)
    hi = x.max(axis=(1, 2), keepdims=True)
    return 0.1 + 0.8 * (x - lo) / (hi - lo)


def phantom(depth: int = 24, size: int = 32) -> np.ndarray:
    """Smooth (D, H, W) volume in [0, 1]: a blurred ellipsoid plus a gaussian blob drifting
    along x with z. The drift breaks the ellipsoid's z-symmetry, without which slices z and
    D-1-z would coincide and no ordering could be recovered from the slices alone."""
    z, y, x = np.meshgrid(np.arange(depth), np.arange(size), np.arange(size), indexing="ij")
    c = (size - 1) / 2
    ell = (((z - (depth - 1) / 2) / (depth / 2 - 1)) ** 2 + ((y - c) / (0.4 * size)) ** 2
           + ((x - c) / (0.3 * size)) ** 2 <= 1).astype(float)
    cx = 0.2 * size + 0.6 * size * z / (depth - 1)
    blob = np.exp(-((x - cx) ** 2 + (y - size / 2) ** 2) / (2 * 3.0**2))
    return np.clip(gaussian_filter(0.5 * ell, 1.0) + 0.4 * blob, 0.0, 1.0)


# --------------------------------------------------------------------------- matching (2-D)


def test_pairwise_ssim_equals_scikit_image():
    """The vectorised pairwise SSIM is scikit-image's structural_similarity (defaults: 7x7
    uniform window, sample covariance) for every pair, including non-square images, another
    data range, negative values and the smallest image a 7x7 window fits."""
    rng = np.random.default_rng(0)
    for m, n, h, w, dr in [(5, 4, 64, 64, 1.0), (6, 3, 9, 13, 2.0), (3, 2, 7, 7, 1.0),
                           (4, 3, 20, 48, 1.0)]:
        a = rng.random((m, h, w)) * dr - 0.2
        b = rng.random((n, h, w)) * dr
        got = pairwise_ssim(a, b, data_range=dr)
        ref = np.array([[structural_similarity(b[j], a[i], data_range=dr) for j in range(n)]
                        for i in range(m)])
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    # near-identical smooth images, where the covariance is a difference of close numbers
    t = textures(rng, 3, 32)
    near = t[::-1] + rng.normal(0, 0.01, t.shape)
    ref = np.array([[structural_similarity(t[j], near[i], data_range=1.0) for j in range(3)]
                    for i in range(3)])
    np.testing.assert_allclose(pairwise_ssim(near, t), ref, rtol=0, atol=1e-6)


def test_permuted_truth_is_matched_back_exactly():
    """Exact reconstructions in shuffled order are credited to the right slices with SSIM 1 and
    the capped PSNR (MSE 0 would be an infinite PSNR), and every slice counts as recovered."""
    rng = np.random.default_rng(1)
    truth = textures(rng, 8)
    perm = rng.permutation(8)
    res = match_reconstructions(truth[perm], truth)
    np.testing.assert_array_equal(perm[res.recon_index], np.arange(8))
    np.testing.assert_allclose(res.ssim, 1.0, atol=1e-9)
    np.testing.assert_array_equal(res.mse, 0.0)
    np.testing.assert_array_equal(res.psnr, PSNR_CAP_DB)
    s = res.summary()
    assert s["attacked"] == 8 and s["recovered"] == 8 and s["recovered_fraction"] == 1.0
    assert s["mean_psnr_recovered"] == PSNR_CAP_DB
    assert s["mean_ssim_all"] == pytest.approx(1.0, abs=1e-9)


def test_psnr_matches_closed_form_for_known_noise():
    """Gaussian noise of std sigma gives MSE ~ sigma^2, so PSNR ~ 10 log10(1 / sigma^2) (26.02 dB
    at sigma 0.05). 128x128 slices: the MSE of 16,384 squared normals has relative std
    sqrt(2 / 16384) = 1.1%, i.e. 0.048 dB, so 0.3 dB is a 6-sigma band per slice."""
    rng = np.random.default_rng(2)
    truth = textures(rng, 4, 128)
    sigma = 0.05
    res = match_reconstructions(truth + rng.normal(0, sigma, truth.shape), truth)
    np.testing.assert_array_equal(res.recon_index, np.arange(4))
    np.testing.assert_allclose(res.psnr, 10 * math.log10(1 / sigma**2), atol=0.3)
    np.testing.assert_allclose(res.mse, sigma**2, rtol=0.07)


def test_blank_and_mixture_are_not_recovered():
    """Neither a blank image nor the average of two slices (a neuron that two images hit) counts
    as a successful reconstruction of either slice, though both get matched to something."""
    rng = np.random.default_rng(3)
    truth = textures(rng, 2)
    recons = np.stack([0.5 * (truth[0] + truth[1]), np.zeros_like(truth[0])])
    res = match_reconstructions(recons, truth)
    assert (res.recon_index >= 0).all()
    assert not res.recovered.any()
    assert res.ssim.max() < 0.9
    s = res.summary()
    assert s["recovered"] == 0 and s["recovered_fraction"] == 0.0
    assert math.isnan(s["mean_ssim_recovered"]) and math.isnan(s["mean_psnr_recovered"])


def test_no_reconstructions_and_surplus_reconstructions():
    """M = 0: every slice unrecovered, means over the recovered are NaN, and unreconstructed
    slices count as SSIM 0 in the all-slices mean. M > N: the exact copies are found among
    mixtures, noise and blanks, and the surplus stays unassigned."""
    rng = np.random.default_rng(4)
    truth = textures(rng, 6)
    res = match_reconstructions(np.zeros((0, 64, 64)), truth)
    np.testing.assert_array_equal(res.recon_index, -1)
    assert not res.recovered.any() and np.isnan(res.ssim).all()
    s = res.summary()
    assert s["attacked"] == 6 and s["matched"] == 0 and s["recovered"] == 0
    assert math.isnan(s["mean_mse_recovered"]) and s["mean_ssim_all"] == 0.0

    decoys = [0.5 * (truth[i] + truth[(i + 1) % 6]) for i in range(6)]
    decoys += [rng.random((64, 64)) for _ in range(10)] + [np.zeros((64, 64))] * 3
    stacked = np.concatenate([np.stack(decoys), truth[::-1]])
    idx = rng.permutation(len(stacked))
    recons = stacked[idx]  # recons[q] is stacked[idx[q]]
    res = match_reconstructions(recons, truth)
    assert res.ssim_matrix.shape == (len(recons), 6)
    # slice j's exact copy was stacked at len(decoys) + 5 - j, then moved by the shuffle
    expected = np.argsort(idx)[len(decoys) + 5 - np.arange(6)]
    np.testing.assert_array_equal(res.recon_index, expected)
    assert res.summary()["recovered"] == 6


def test_nan_reconstructions_are_never_matched():
    """Reconstructions with NaN or inf (a failed division in the attack) neither crash the
    scoring nor use up a true slice: they get SSIM -1 in the matrix and stay unassigned."""
    rng = np.random.default_rng(5)
    truth = textures(rng, 3)
    bad = np.full((64, 64), np.nan)
    inf = truth[1].copy()
    inf[5, 5] = np.inf
    res = match_reconstructions(np.stack([bad, truth[2], inf]), truth)
    np.testing.assert_array_equal(res.ssim_matrix[[0, 2]], -1.0)
    np.testing.assert_array_equal(res.recon_index, [-1, -1, 1])
    np.testing.assert_array_equal(res.recovered, [False, False, True])
    assert res.summary()["recovered"] == 1
    only_bad = match_reconstructions(np.stack([bad] * 5), truth)
    assert only_bad.summary()["matched"] == 0


def test_hungarian_does_not_credit_one_reconstruction_twice():
    """Two similar true slices (A, and B = 85% A + 15% another image), an exact copy of A and a
    noisy copy of B: the copy of A is the closest reconstruction to both, so greedy best-per-slice
    would credit it twice; the optimal assignment uses each reconstruction once and recovers
    both slices."""
    rng = np.random.default_rng(6)
    t = textures(rng, 2)
    truth = np.stack([t[0], 0.85 * t[0] + 0.15 * t[1]])
    recons = np.stack([truth[0], truth[1] + rng.normal(0, 0.02, truth[1].shape)])
    sim = pairwise_ssim(recons, truth)
    greedy = sim.argmax(axis=0)
    assert greedy[0] == greedy[1] == 0  # the premise: greedy double-uses reconstruction 0
    res = match_reconstructions(recons, truth)
    np.testing.assert_array_equal(res.recon_index, [0, 1])
    assert res.recovered.all()


def test_assignment_maximises_successes_before_total_ssim():
    """Plain maximal total SSIM would pick (r0->A 0.99, r1->B 0.89): one success, total 1.88.
    Counting successes first picks (r0->B 0.92, r1->A 0.90): two successes (paper 003's ASR)."""
    sim = np.array([[0.99, 0.92], [0.90, 0.89]])
    rows, cols = assign_one_to_one(sim, 0.9)
    assert dict(zip(cols.tolist(), rows.tolist(), strict=True)) == {0: 1, 1: 0}


def test_psnr_cap():
    assert psnr_db(0.0) == PSNR_CAP_DB
    assert psnr_db(1e-30) == PSNR_CAP_DB
    assert psnr_db(0.01) == pytest.approx(20.0)
    assert psnr_db(0.01, data_range=2.0) == pytest.approx(20.0 + 20 * math.log10(2))
    assert math.isnan(psnr_db(math.nan))


# --------------------------------------------------------------------------- 3-D reassembly


def test_oracle_reassembly_of_exact_subset():
    """Exact slices placed at their known indices: the stack of recovered slices scores SSIM 1
    and capped PSNR (Table 2's per-recovered-slice metrics), the volume holds them at their
    indices and zeros (the paper's black slices) elsewhere."""
    vol = phantom()
    rng = np.random.default_rng(7)
    idx = np.sort(rng.choice(24, size=15, replace=False))
    rec = {int(i): vol[i] for i in idx}
    volume, mask = reassemble_oracle(rec, 24, (32, 32))
    assert volume.dtype == np.float32 and volume.shape == (24, 32, 32)
    np.testing.assert_array_equal(np.flatnonzero(mask), idx)
    np.testing.assert_allclose(volume[mask], vol[idx], atol=1e-7)
    assert not volume[~mask].any()
    s = score_volume(vol, rec)
    assert s["slices_recovered"] == 15 and s["depth"] == 24
    assert s["ssim_3d_recovered"] == pytest.approx(1.0, abs=1e-9)
    assert s["psnr_3d_recovered"] == PSNR_CAP_DB
    assert s["win_size_recovered"] == 7


def test_missing_slices_lower_the_oracle_volume_ssim():
    """Half the slices missing (zeros) scores well below the complete volume, which is exact."""
    vol = phantom()
    full = score_volume(vol, {i: vol[i] for i in range(24)})
    half = score_volume(vol, {i: vol[i] for i in range(0, 24, 2)})
    assert full["ssim_3d_oracle"] == pytest.approx(1.0, abs=1e-9)
    assert full["psnr_3d_oracle"] == PSNR_CAP_DB
    assert half["ssim_3d_oracle"] < full["ssim_3d_oracle"] - 0.3
    assert half["psnr_3d_oracle"] < 30.0
    assert half["ssim_3d_recovered"] == pytest.approx(1.0, abs=1e-9)  # what was recovered is exact


def test_order_without_oracle_restores_shuffled_smooth_volume():
    """A server without slice indices puts a shuffled smooth volume back in order (up to the
    unidentifiable direction): |Kendall's tau| >= 0.95, and the non-oracle reassembly scored in
    its better direction is exact."""
    vol = phantom()
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(24)
        order = order_without_oracle([vol[i] for i in perm])
        assert sorted(order) == list(range(24))
        tau = kendalltau(np.arange(24), perm[order]).statistic
        assert abs(tau) >= 0.95
    s = score_volume(vol, {i: vol[i] for i in range(24)})
    assert s["order_kendall_tau"] >= 0.95 and s["order_adjacent_fraction"] >= 0.9
    assert s["ssim_3d_no_oracle"] == pytest.approx(1.0, abs=1e-9)


def test_reversed_direction_scores_the_same():
    """The path direction is unidentifiable: slices handed over in reverse order score as well as
    in true order (score_volume keeps the better direction, tau is absolute)."""
    vol = phantom()
    order = order_without_oracle([vol[i] for i in range(23, -1, -1)])
    assert abs(kendalltau(np.arange(24), order).statistic) >= 0.95
    for seed in range(2):
        s = score_volume(vol, {i: vol[i] for i in range(24)}, seed=seed)
        assert s["ssim_3d_no_oracle"] == pytest.approx(1.0, abs=1e-9)
        assert s["order_kendall_tau"] == pytest.approx(1.0)


def test_zero_one_and_few_slices():
    """0 or 1 recovered slices: NaN where a metric is undefined, no crash; the oracle volume is
    still scored (all or nearly all zeros). 5 slices: the 3-D SSIM window shrinks to 5, as
    scikit-image's would have to."""
    vol = phantom()
    none = score_volume(vol, {})
    assert none["slices_recovered"] == 0
    for key in ("ssim_3d_recovered", "psnr_3d_recovered", "ssim_3d_no_oracle",
                "order_kendall_tau", "order_adjacent_fraction"):
        assert math.isnan(none[key]), key
    assert 0.0 <= none["ssim_3d_oracle"] < 0.5
    one = score_volume(vol, {3: vol[3]})
    assert math.isnan(one["ssim_3d_recovered"]) and math.isnan(one["order_kendall_tau"])
    assert one["psnr_3d_recovered"] == PSNR_CAP_DB
    few = {i: vol[i] + 0.01 for i in (2, 5, 9, 12, 20)}
    s = score_volume(vol, few)
    assert s["win_size_recovered"] == 5
    idx = sorted(few)
    ref = structural_similarity(vol[idx], np.stack([few[i] for i in idx]), data_range=1.0,
                                win_size=5)
    assert s["ssim_3d_recovered"] == pytest.approx(ref, abs=1e-12)


def test_non_finite_and_invalid_slices():
    """A NaN slice counts as not recovered; an index outside the volume or a slice of the wrong
    shape is a caller error."""
    vol = phantom()
    rec = {i: vol[i] for i in range(10)}
    rec[4] = np.full((32, 32), np.nan)
    _, mask = reassemble_oracle(rec, 24, (32, 32))
    assert mask.sum() == 9 and not mask[4]
    assert score_volume(vol, rec)["slices_recovered"] == 9
    with pytest.raises(ValueError):
        reassemble_oracle({24: vol[0]}, 24, (32, 32))
    with pytest.raises(ValueError):
        reassemble_oracle({0: vol[0][:16]}, 24, (32, 32))
