"""Shared fixtures: the demonstration model, the shipped digit extractor and MNIST."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from skiptune.data import load_mnist
from skiptune.models import TunableModel, load_model
from skiptune.objectives import load_feature_extractor
from skiptune.objectives._features import DigitFeatureExtractor
from skiptune.objectives.mnist_reference import mnist_features

ASSETS = Path(__file__).resolve().parents[2] / "skiptune" / "assets"


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Sample and featurise on one intra-op thread, then restore torch's setting."""
    # On two cores shared with other jobs (load 5), a second thread spun in OpenMP waits and
    # made the sampling tests 8× slower: 272 s against 34 s.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Caches in a fresh folder, and no Inception weights from the environment."""
    monkeypatch.setenv("SKIPTUNE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("SKIPTUNE_INCEPTION_WEIGHTS", raising=False)


@pytest.fixture(scope="session")
def demo_model() -> TunableModel:
    return load_model(ASSETS / "demo_unet.pt", device="cpu")


@pytest.fixture(scope="session")
def digits() -> DigitFeatureExtractor:
    extractor = load_feature_extractor("digits", device="cpu")
    assert isinstance(extractor, DigitFeatureExtractor)
    return extractor


@pytest.fixture(scope="session")
def mnist_digits() -> np.ndarray:
    """The 10,000 MNIST test digits, uint8 [N, 28, 28] in [0, 255]."""
    return load_mnist()[0]


@pytest.fixture(scope="session")
def mnist_digit_features(digits: DigitFeatureExtractor) -> np.ndarray:
    """Digit features float64 [10000, 128] of all MNIST test digits (about 10 s)."""
    return mnist_features(digits)


def as_images(digits_u8: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] → float [N, 1, H, W] in [-1, 1], as the model's images are."""
    return torch.from_numpy(digits_u8).unsqueeze(1).to(torch.float32) / 127.5 - 1.0


class CountingExtractor:
    """The real digit extractor, counting the images it is asked to featurise."""

    def __init__(self, inner: DigitFeatureExtractor) -> None:
        self.inner = inner
        self.name = inner.name
        self.identity = inner.identity
        self.feature_dim = inner.feature_dim
        self.images_seen = 0

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        self.images_seen += len(images)
        return self.inner(images)


@pytest.fixture
def counting(digits: DigitFeatureExtractor) -> Iterator[CountingExtractor]:
    yield CountingExtractor(digits)
