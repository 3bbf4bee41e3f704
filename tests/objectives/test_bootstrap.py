"""The paired bootstrap over samples: resampled indices shared by candidate and baseline."""

from __future__ import annotations

import numpy as np
import pytest

from skiptune.errors import ConfigurationError
from skiptune.objectives import (
    bootstrap_indices,
    bootstrap_values,
    frechet_distance_to_features,
    paired_gain_interval,
)
from skiptune.objectives._maths import paired_bootstrap_gain

D = 4
MU, SIGMA = np.zeros(D), np.eye(D)


def _fd(features: np.ndarray) -> float:
    return frechet_distance_to_features(MU, SIGMA, features)


def test_indices_are_reproducible_draws_with_replacement() -> None:
    first = bootstrap_indices(50, resamples=20, seed=3)
    assert first.shape == (20, 50) and first.min() >= 0 and first.max() < 50
    assert np.array_equal(first, bootstrap_indices(50, resamples=20, seed=3))
    assert not np.array_equal(first, bootstrap_indices(50, resamples=20, seed=4))
    assert any(len(set(row)) < 50 for row in first)          # with replacement


def test_the_same_features_gain_nothing_with_a_zero_width_interval() -> None:
    x = np.random.default_rng(0).normal(size=(100, D))
    gain, low, high = paired_bootstrap_gain(x, x, _fd, resamples=50)
    assert gain == 0.0 and low == 0.0 and high == 0.0


def test_a_real_gain_has_an_interval_around_it_above_zero() -> None:
    noise = np.random.default_rng(1).normal(size=(300, D))
    baseline, candidate = noise * 2.0 + 0.5, noise * 1.1      # the same seeds, another ρ
    gain, low, high = paired_bootstrap_gain(candidate, baseline, _fd, resamples=200)
    assert 0.0 < low <= gain <= high < 1.0


def test_pairing_narrows_the_interval_against_independent_draws() -> None:
    # Candidate and baseline share their noise; an unpaired bootstrap (other indices for
    # each) would count that noise twice. This is what the pairing is for.
    noise = np.random.default_rng(2).normal(size=(200, D))
    baseline, candidate = noise * 1.6, noise * 1.3
    indices = bootstrap_indices(200, resamples=300, seed=0)
    other = bootstrap_indices(200, resamples=300, seed=1)
    a, b = bootstrap_values(candidate, _fd, indices), bootstrap_values(baseline, _fd, indices)
    paired = paired_gain_interval(a, b)
    unpaired = paired_gain_interval(a, bootstrap_values(baseline, _fd, other))
    assert paired[1] - paired[0] < 0.5 * (unpaired[1] - unpaired[0])


def test_bad_arguments_are_one_line_errors() -> None:
    with pytest.raises(ConfigurationError, match="at least 2 samples"):
        bootstrap_indices(1, resamples=5, seed=0)
    with pytest.raises(ConfigurationError, match="one length"):
        paired_gain_interval(np.ones(3), np.ones(4))
    with pytest.raises(ConfigurationError, match="level"):
        paired_gain_interval(np.ones(3), np.ones(3), level=1.5)
    with pytest.raises(ConfigurationError, match="do not draw"):
        bootstrap_values(np.ones((5, D)), _fd, bootstrap_indices(6, resamples=2, seed=0))
