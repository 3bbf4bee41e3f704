"""Proxy FID/KID objectives: feature extractors, reference statistics and rungs of N.

A trial's score is the Fréchet distance (or KID) between features of images sampled with
fixed seeds under a skip schedule and features of real reference images.
"""

from __future__ import annotations

from skiptune.objectives._maths import (
    frechet_distance,
    gaussian_statistics,
    kernel_inception_distance,
)

__all__ = [
    "frechet_distance",
    "gaussian_statistics",
    "kernel_inception_distance",
]
