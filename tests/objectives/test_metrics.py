"""The metric registry: names, lookup errors, and each metric's score on real MNIST features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from skiptune.errors import ConfigurationError
from skiptune.objectives import (
    METRICS,
    ObjectiveSettings,
    ReferenceStatistics,
    frechet_distance_to_features,
    get_metric,
    load_reference,
)
from skiptune.objectives._maths import _symmetric_sqrt, kernel_inception_distance
from tests.objectives.conftest import ASSETS


@pytest.fixture(scope="module")
def reference(digits) -> ReferenceStatistics:
    """The shipped MNIST reference, with a feature sample so that KID can use it."""
    return load_reference(ASSETS / "mnist_reference.npz", digits, need_features=True)


def test_the_registry_holds_fd_and_kid_by_their_own_names() -> None:
    assert sorted(METRICS) == ["fd", "kid"]
    assert all(name == metric.name for name, metric in METRICS.items())
    assert get_metric("kid").needs_reference_features
    assert not get_metric("fd").needs_reference_features


@pytest.mark.parametrize("name", ["fid", "FD", "", None])
def test_an_unknown_metric_lists_the_registered_names(name) -> None:
    with pytest.raises(ConfigurationError, match="choose one of fd, kid"):
        get_metric(name)


def test_settings_accept_exactly_the_registered_metrics() -> None:
    for name in METRICS:
        assert ObjectiveSettings(metric=name).metric == name
    with pytest.raises(ConfigurationError, match="unknown metric 'fid'"):
        ObjectiveSettings(metric="fid")


def test_fd_scores_mnist_digits_as_the_frechet_distance(reference, mnist_digit_features) -> None:
    sample = mnist_digit_features[:64]
    fd = get_metric("fd")
    expected = frechet_distance_to_features(reference.mu, reference.sigma, sample)
    assert fd.score(sample, reference, 0, None) == pytest.approx(expected, rel=1e-9)
    # The precomputed √Σ_ref gives the same value as computing it on the spot.
    root = _symmetric_sqrt(reference.sigma)
    assert fd.score(sample, reference, 0, root) == pytest.approx(expected, rel=1e-9)
    # Real digit features are closer to the MNIST reference than the same features scrambled.
    shuffled = np.random.default_rng(0).permuted(sample, axis=0)
    noise = shuffled + np.random.default_rng(1).normal(0, sample.std(), sample.shape)
    assert fd.score(noise, reference, 0, root) > expected


def test_kid_scores_with_the_reference_feature_sample(reference, mnist_digit_features) -> None:
    sample = mnist_digit_features[:64]
    assert reference.features is not None
    kid = get_metric("kid")
    assert kid.score(sample, reference, 3, None) == pytest.approx(
        kernel_inception_distance(sample, reference.features, seed=3), rel=1e-12)


def test_kid_without_reference_features_says_how_to_get_them(
    reference, mnist_digit_features
) -> None:
    bare = dataclasses.replace(reference, features=None)
    with pytest.raises(ConfigurationError, match="need_features=True or use metric 'fd'"):
        get_metric("kid").score(mnist_digit_features[:64], bare, 0, None)
