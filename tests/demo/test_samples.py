"""The shipped demonstration model draws digits: the digit classifier recognises its samples."""

from __future__ import annotations

import pytest
import torch

from skiptune import initial_noise, sample
from skiptune.objectives import load_feature_extractor

NUM_SAMPLES = 100


@pytest.mark.slow
def test_samples_at_35_nfe_are_confidently_classified_digits_of_every_class(demo_model) -> None:
    noise = initial_noise(NUM_SAMPLES, demo_model.image_shape, seed=0)
    images = sample(demo_model, noise, sampler="heun", nfe=35)
    digits = load_feature_extractor("digits")
    with torch.no_grad():
        probabilities = digits.net(digits.prepare(images)).softmax(dim=1)
    confidence, label = probabilities.max(dim=1)

    # benchmarks/demo_quality.py: 91.9 % of the first 1,000 are confident (real digits: 98.7 %),
    # classes 8.2-12.0 %; these are its first 100, checked with a margin for their noise.
    assert float((confidence >= 0.9).double().mean()) >= 0.7
    shares = torch.bincount(label, minlength=10).double() / NUM_SAMPLES
    assert float(shares.min()) >= 0.02 and float(shares.max()) <= 0.25
