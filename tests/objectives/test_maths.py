"""Fréchet distance, Gaussian statistics and KID on small matrices with known answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import linalg

from skiptune.errors import ConfigurationError
from skiptune.objectives import frechet_distance_to_features, gaussian_statistics
from skiptune.objectives._maths import frechet_distance, kernel_inception_distance


def sqrtm_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """The textbook formula with scipy's sqrtm of the product, as clean-fid computes it."""
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2).real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def test_diagonal_gaussians_by_hand() -> None:
    # Commuting (diagonal) covariances: tr √(Σ1Σ2) = Σ_i √(a_i b_i), so
    # d² = |Δμ|² + Σ_i (√a_i − √b_i)².
    mu1, mu2 = np.array([0.0, 1.0]), np.array([3.0, -3.0])
    sigma1, sigma2 = np.diag([4.0, 9.0]), np.diag([1.0, 16.0])
    expected = (9.0 + 16.0) + (2.0 - 1.0) ** 2 + (3.0 - 4.0) ** 2
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-12)


def test_one_dimensional_is_the_squared_wasserstein_distance() -> None:
    # W2²(N(m1, s1²), N(m2, s2²)) = (m1 − m2)² + (s1 − s2)².
    value = frechet_distance(
        np.array([1.0]), np.array([[0.25]]), np.array([-1.0]), np.array([[4.0]])
    )
    assert value == pytest.approx(4.0 + (0.5 - 2.0) ** 2, rel=1e-12)


def test_identical_statistics_give_zero() -> None:
    rng = np.random.default_rng(0)
    mu, sigma = gaussian_statistics(rng.normal(size=(500, 16)))
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_agrees_with_sqrtm_where_well_conditioned() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    b = rng.normal(size=(400, 12)) * 2.0 + 0.5
    mu1, sigma1 = gaussian_statistics(a)
    mu2, sigma2 = gaussian_statistics(b)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(
        sqrtm_frechet(mu1, sigma1, mu2, sigma2), rel=1e-8
    )
    # Symmetric in its two Gaussians.
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(
        frechet_distance(mu2, sigma2, mu1, sigma1), rel=1e-9
    )


def test_rank_deficient_covariances_are_stable() -> None:
    # N = 20 samples of 256-d features: both covariances have rank ≤ 19.
    rng = np.random.default_rng(2)
    mu1, sigma1 = gaussian_statistics(rng.normal(size=(20, 256)))
    mu2, sigma2 = gaussian_statistics(rng.normal(size=(20, 256)) + 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = frechet_distance(mu1, sigma1, mu2, sigma2)
        again = frechet_distance(mu1, sigma1, mu1, sigma1)
    assert np.isfinite(value) and value > 0
    assert again == pytest.approx(0.0, abs=1e-8)


def test_gaussian_statistics_are_mean_and_unbiased_covariance() -> None:
    features = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 4.0]], dtype=np.float32)
    mu, sigma = gaussian_statistics(features)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, [3.0, 4.0])
    np.testing.assert_allclose(sigma, np.cov(features.astype(np.float64), rowvar=False))


@pytest.mark.parametrize(
    "features", [np.zeros((1, 4)), np.zeros(4), np.array([[0.0, np.nan], [1.0, 1.0]])]
)
def test_gaussian_statistics_refuse_bad_input(features: np.ndarray) -> None:
    with pytest.raises(ConfigurationError):
        gaussian_statistics(features)


def test_frechet_refuses_mismatched_dimensions() -> None:
    with pytest.raises(ConfigurationError, match="same feature extractor"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ConfigurationError, match=r"\[D, D\]"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


def clean_fid_kid(feats1: np.ndarray, feats2: np.ndarray, *, subsets: int, size: int, seed: int):
    """clean-fid's kernel_distance, with its subset draws taken from our generator."""
    rng = np.random.default_rng(seed)
    n, t = feats1.shape[1], 0.0
    for _ in range(subsets):
        # kernel_inception_distance draws from its first argument first.
        y = feats1[rng.choice(feats1.shape[0], size, replace=False)]
        x = feats2[rng.choice(feats2.shape[0], size, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (size - 1) - b.sum() * 2 / size
    return t / subsets / size


def test_kid_matches_clean_fid_formula_and_separates_distributions() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 32))
    same = rng.normal(size=(300, 32))
    other = rng.normal(size=(300, 32)) * 1.5 + 0.5
    kid_same = kernel_inception_distance(a, same, num_subsets=50, subset_size=100, seed=4)
    kid_other = kernel_inception_distance(a, other, num_subsets=50, subset_size=100, seed=4)
    assert kid_same == pytest.approx(
        clean_fid_kid(a, same, subsets=50, size=100, seed=4), rel=1e-10
    )
    assert abs(kid_same) < 0.02
    assert kid_other > 0.5
    assert kid_other > 20 * abs(kid_same)
    # Seeded: the same call gives the same number.
    assert kid_other == kernel_inception_distance(a, other, num_subsets=50, subset_size=100, seed=4)


def test_kid_checks_its_arguments() -> None:
    a = np.zeros((10, 4))
    with pytest.raises(ConfigurationError, match="subset_size"):
        kernel_inception_distance(a, a, subset_size=11)
    with pytest.raises(ConfigurationError, match="different dimensions"):
        kernel_inception_distance(a, np.zeros((10, 5)))


@settings(max_examples=40, deadline=None)
@given(
    num=st.integers(min_value=2, max_value=40),
    dim=st.integers(min_value=1, max_value=24),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_features_route_equals_the_covariance_route(num: int, dim: int, seed: int) -> None:
    # Both sides of N = D: the N×N route (N ≤ D) and the D×D route must agree with the
    # textbook statistics, including rank-deficient covariances at N < D.
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(dim + 3, dim)) * rng.uniform(0.1, 3.0, size=dim)
    mu_ref, sigma_ref = gaussian_statistics(reference)
    features = rng.normal(loc=0.3, size=(num, dim))
    expected = frechet_distance(mu_ref, sigma_ref, *gaussian_statistics(features))
    value = frechet_distance_to_features(mu_ref, sigma_ref, features)
    assert value == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_features_route_far_below_full_rank_matches_to_1e7() -> None:
    # N = 64 against D = 512: the generated covariance has rank 63 of 512, as at Inception's
    # D = 2,048 (benchmarks/frechet_speed.py compares the routes there).
    rng = np.random.default_rng(0)
    dim = 512
    mu_ref, sigma_ref = gaussian_statistics(rng.normal(size=(1000, dim)))
    features = rng.normal(loc=0.05, size=(64, dim))
    expected = frechet_distance(mu_ref, sigma_ref, *gaussian_statistics(features))
    assert frechet_distance_to_features(mu_ref, sigma_ref, features) == pytest.approx(
        expected, rel=1e-7
    )


def test_features_route_rejects_mismatched_dimensions() -> None:
    mu_ref, sigma_ref = np.zeros(3), np.eye(3)
    with pytest.raises(ConfigurationError, match="dimension 4 but the reference 3"):
        frechet_distance_to_features(mu_ref, sigma_ref, np.ones((5, 4)))
