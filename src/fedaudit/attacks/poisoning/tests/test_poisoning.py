"""Data poisoning, paper 000 Eq. 2: x' = (1 - gamma) x + gamma n, n ~ N(mu_x, sigma_x).

Statistical tolerances are 5 standard errors of the estimate on N = 32^3 voxels, so a correct
implementation fails with probability < 1e-6 and the seeds are fixed anyway.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedaudit.attacks.poisoning.noise import poison_patient, poison_volume
from fedaudit.data.slices import Volume

N = 32
NVOX = N**3
Z = 5.0  # standard errors allowed


def head() -> Volume:
    """A head-like patient: ellipsoid mask, CT -1000 HU outside, tissue and a bone shell inside;
    MR 0 outside. Strongly non-Gaussian, like real volumes."""
    z, y, x = np.indices((N, N, N), dtype=np.float32) - (N - 1) / 2
    r = np.sqrt((z / 12) ** 2 + (y / 14) ** 2 + (x / 11) ** 2)
    mask = r <= 1
    ct = np.where(r <= 0.85, 40.0 + 2.0 * x, np.where(mask, 1200.0, -1000.0)).astype(np.float32)
    mr = np.where(r <= 0.85, 0.5 + 0.01 * y, np.where(mask, 0.1, 0.0)).astype(np.float32)
    return Volume("sub-01", mr, ct, mask)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    return head().ct


def test_gamma_zero_returns_the_volume_unchanged(ct: np.ndarray) -> None:
    out = poison_volume(ct, 0.0, np.random.default_rng(0))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, ct)
    assert out is not ct  # a copy: training may modify it without touching the clean data


def test_gamma_one_is_pure_noise_with_the_volume_statistics(ct: np.ndarray) -> None:
    mu, sigma = float(ct.mean(dtype=np.float64)), float(ct.std(dtype=np.float64))
    out = poison_volume(ct, 1.0, np.random.default_rng(1))
    assert out.shape == ct.shape and out.dtype == np.float32
    assert abs(out.mean() - mu) < Z * sigma / np.sqrt(NVOX)
    assert abs(out.std() - sigma) < Z * sigma / np.sqrt(2 * NVOX)
    assert abs(corr(out, ct)) < Z / np.sqrt(NVOX)  # nothing of the anatomy is left


def test_gamma_half_keeps_the_mean_and_mixes_the_variance(ct: np.ndarray) -> None:
    mu, sigma = float(ct.mean(dtype=np.float64)), float(ct.std(dtype=np.float64))
    out = poison_volume(ct, 0.5, np.random.default_rng(2)).astype(np.float64)
    # E[x'] = 0.5 mu + 0.5 mu; SE from the noise term only.
    assert abs(out.mean() - mu) < Z * 0.5 * sigma / np.sqrt(NVOX)
    # Var[x'] = 0.25 sigma^2 + 0.25 sigma^2 (x and n independent). SE: the sample variance of
    # 0.5 n (0.25 sigma^2 sqrt(2/N)) and the sample covariance term (0.5 sigma^2 / sqrt(N)).
    expected = 0.25 * sigma**2 + 0.25 * sigma**2
    se = sigma**2 * np.hypot(0.25 * np.sqrt(2 / NVOX), 0.5 / np.sqrt(NVOX))
    assert abs(out.var() - expected) < Z * se
    # and the anatomy is still half there: corr(x', x) = 0.5 sigma^2 / (sigma * sqrt(0.5) sigma)
    assert abs(corr(out, ct) - np.sqrt(0.5)) < Z * 0.5 / np.sqrt(NVOX)  # SE (1 - rho^2)/sqrt(N)


@pytest.mark.parametrize("gamma", [0.1, 0.5])
def test_the_blend_is_eq2_with_noise_independent_of_x(ct: np.ndarray, gamma: float) -> None:
    mu, sigma = float(ct.mean(dtype=np.float64)), float(ct.std(dtype=np.float64))
    out = poison_volume(ct, gamma, np.random.default_rng(3)).astype(np.float64)
    noise = (out - (1 - gamma) * ct) / gamma  # invert Eq. 2
    assert abs(noise.mean() - mu) < Z * sigma / np.sqrt(NVOX)
    assert abs(noise.std() - sigma) < Z * sigma / np.sqrt(2 * NVOX)
    assert abs(corr(noise, ct)) < Z / np.sqrt(NVOX)


def test_same_rng_seed_gives_the_same_noise(ct: np.ndarray) -> None:
    a = poison_volume(ct, 0.5, np.random.default_rng(4))
    b = poison_volume(ct, 0.5, np.random.default_rng(4))
    c = poison_volume(ct, 0.5, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("gamma", [-0.1, 1.01, float("nan"), float("inf")])
def test_gamma_outside_unit_interval_is_rejected(ct: np.ndarray, gamma: float) -> None:
    with pytest.raises(ValueError, match="gamma"):
        poison_volume(ct, gamma, np.random.default_rng(0))


def test_patient_poisoning_uses_each_modality_statistics_and_independent_noise() -> None:
    vol = head()
    clean_mr, clean_ct = vol.mr.copy(), vol.ct.copy()
    out = poison_patient(vol, 1.0, seed=42, center="C")
    assert out.name == vol.name
    np.testing.assert_array_equal(out.mask, vol.mask)
    np.testing.assert_array_equal(vol.mr, clean_mr)  # the clean patient is left intact
    np.testing.assert_array_equal(vol.ct, clean_ct)
    # each modality gets noise at its own scale (CT in HU, MR in [0, 1])
    for noisy, clean in ((out.mr, clean_mr), (out.ct, clean_ct)):
        assert abs(noisy.std() - clean.std()) < Z * clean.std() / np.sqrt(2 * NVOX)
    # independent draws: the standardised MR and CT noise fields are uncorrelated (a shared
    # seed would make them identical, correlation 1)
    assert abs(corr(out.mr, out.ct)) < Z / np.sqrt(NVOX)


def test_patient_poisoning_is_reproducible_per_seed_center_and_patient() -> None:
    vol = head()
    a = poison_patient(vol, 0.5, seed=42, center="C")
    b = poison_patient(vol, 0.5, seed=42, center="C")
    np.testing.assert_array_equal(a.mr, b.mr)
    np.testing.assert_array_equal(a.ct, b.ct)
    other_seed = poison_patient(vol, 0.5, seed=43, center="C")
    other_center = poison_patient(vol, 0.5, seed=42, center="D")
    renamed = Volume("sub-02", vol.mr, vol.ct, vol.mask)
    other_patient = poison_patient(renamed, 0.5, seed=42, center="C")
    for other in (other_seed, other_center, other_patient):
        assert not np.array_equal(a.ct, other.ct)
        assert not np.array_equal(a.mr, other.mr)
