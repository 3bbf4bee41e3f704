"""The proxy metrics a study can score with, in one registry shaped like the samplers'.

A metric compares features of generated images with a reference set; it is one
:class:`Metric` in :data:`METRICS`, looked up by name with :func:`get_metric`. Settings
validation, the objective's scoring and the command line's ``--metric`` all read this table,
so a new metric is one entry here and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from skiptune.errors import ConfigurationError
from skiptune.objectives._maths import frechet_distance_to_features, kernel_inception_distance

if TYPE_CHECKING:
    from skiptune.objectives._reference import ReferenceStatistics

__all__ = ["METRICS", "Metric", "MetricScore", "get_metric"]

MetricScore = Callable[["np.ndarray", "ReferenceStatistics", int, "np.ndarray | None"], float]
"""``score(features, reference, seed, reference_root)``: the metric of generated features
float [N, D] against ``reference``. ``seed`` seeds any random subsets (KID's);
``reference_root`` is √Σ_ref when the caller precomputed it (the reference is fixed across
trials), else None."""


@dataclass(frozen=True)
class Metric:
    """A registered proxy metric; lower is better.

    Attributes:
        name: the name settings and ``--metric`` use (``"fd"``, ``"kid"``).
        description: one line for people, e.g. in help texts.
        needs_reference_features: whether the reference must carry a feature sample
            [M, D] besides its mean and covariance (KID compares samples, FD Gaussians).
        score: the function, see :data:`MetricScore`.
    """

    name: str
    description: str
    needs_reference_features: bool
    score: MetricScore


def _frechet(
    features: np.ndarray, reference: ReferenceStatistics, seed: int, root: np.ndarray | None
) -> float:
    """Squared Fréchet distance of the features' Gaussian fit to the reference's (FID)."""
    return frechet_distance_to_features(reference.mu, reference.sigma, features, root_ref=root)


def _kid(
    features: np.ndarray, reference: ReferenceStatistics, seed: int, root: np.ndarray | None
) -> float:
    """KID (unbiased MMD², cubic kernel) against the reference's feature sample."""
    if reference.features is None:
        raise ConfigurationError(
            f"KID needs reference features, and reference {reference.source} has none; "
            "load it with need_features=True or use metric 'fd'"
        )
    return kernel_inception_distance(features, reference.features, seed=seed)


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("fd", "Fréchet distance of Gaussian feature fits (FID with Inception "
               "features)", False, _frechet),
        Metric("kid", "kernel distance, unbiased at small N (KID with Inception features)",
               True, _kid),
    )
}


def get_metric(name: str) -> Metric:
    """Look up a registered metric by name; an unknown name lists the known ones."""
    try:
        return METRICS[name]
    except (KeyError, TypeError) as e:
        raise ConfigurationError(
            f"unknown metric {name!r}; choose one of {', '.join(sorted(METRICS))}"
        ) from e
