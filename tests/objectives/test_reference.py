"""Reference statistics from folders, .npz files and clean-fid names; caching; the shipped file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from skiptune.errors import ConfigurationError
from skiptune.objectives import (
    DirectoryStatisticsCache,
    ReferenceStatistics,
    StatisticsCache,
    gaussian_statistics,
    load_reference,
)
from skiptune.objectives._cache import statistics_key
from skiptune.objectives._features import DigitFeatureExtractor
from skiptune.objectives._maths import frechet_distance, kernel_inception_distance
from skiptune.objectives.mnist_reference import MNIST_REFERENCE_PATH, build_mnist_reference
from tests.objectives.conftest import CountingExtractor, as_images


def write_pngs(folder: Path, digits_u8: np.ndarray) -> None:
    """Digits as 8-bit grayscale PNGs, half of them one folder deeper (searched recursively)."""
    for index, digit in enumerate(digits_u8):
        target = folder / ("deeper" if index % 2 else "") / f"{index:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digit, mode="L").save(target)


# --- Folders and the cache ------------------------------------------------------------------


def test_folder_statistics_are_computed_once_then_served_from_cache(
    tmp_path: Path, mnist_digits: np.ndarray, counting: CountingExtractor
) -> None:
    digits_u8 = mnist_digits[:40]
    write_pngs(tmp_path / "ref", digits_u8)
    cache = DirectoryStatisticsCache(tmp_path / "stats")
    assert isinstance(cache, StatisticsCache)

    first = load_reference(tmp_path / "ref", counting, cache=cache, progress=False)
    assert counting.images_seen == 40
    # Same features up to float32 round-off (the folder is read in another order).
    mu, sigma = gaussian_statistics(counting.inner(as_images(digits_u8)))
    np.testing.assert_allclose(first.mu, mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first.sigma, sigma, rtol=1e-5, atol=1e-6)
    assert first.count == 40 and first.extractor == counting.identity
    assert len(list((tmp_path / "stats").glob("*.npz"))) == 1

    second = load_reference(tmp_path / "ref", counting, cache=cache, progress=False)
    assert counting.images_seen == 40  # not called again: a cache hit
    assert second.identity == first.identity and second.count == 40

    # Changing one image's bytes changes the content hash, hence the key: recomputed.
    Image.fromarray(255 - digits_u8[0], mode="L").save(tmp_path / "ref" / "0000.png")
    third = load_reference(tmp_path / "ref", counting, cache=cache, progress=False)
    assert counting.images_seen == 80
    assert third.identity != first.identity


def test_default_cache_lives_under_skiptune_cache_dir(
    tmp_path: Path, mnist_digits: np.ndarray, counting: CountingExtractor
) -> None:
    write_pngs(tmp_path / "ref", mnist_digits[:4])
    load_reference(tmp_path / "ref", counting, progress=False)
    stats = Path(os.environ["SKIPTUNE_CACHE_DIR"]) / "stats"
    # Written atomically: the one entry, and no temporary file left beside it.
    assert [file.suffix for file in stats.iterdir()] == [".npz"]


def test_directory_cache_round_trip_and_damaged_entries(tmp_path: Path) -> None:
    cache = DirectoryStatisticsCache(tmp_path)
    key = statistics_key(content_hash="abc", extractor_identity="digits:123")
    assert cache.get(key) is None
    cache.put(key, np.arange(3.0), np.eye(3), meta={"source": "test"})
    mu, sigma = cache.get(key)
    np.testing.assert_array_equal(mu, np.arange(3.0))
    np.testing.assert_array_equal(sigma, np.eye(3))
    (tmp_path / f"{key}.npz").write_bytes(b"not a zip file")
    assert cache.get(key) is None  # damaged: a miss, recomputed by the caller
    with pytest.raises(ConfigurationError, match="not a plain file name"):
        cache.get("../escape")


def test_empty_folder(tmp_path: Path, digits: DigitFeatureExtractor) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ConfigurationError, match=r"holds no \.png/\.jpg/\.jpeg images"):
        load_reference(tmp_path / "empty", digits, progress=False)


def test_inconsistent_sizes_and_unreadable_images(
    tmp_path: Path, mnist_digits: np.ndarray, digits: DigitFeatureExtractor
) -> None:
    write_pngs(tmp_path / "ref", mnist_digits[:3])
    Image.fromarray(np.zeros((32, 32), np.uint8), mode="L").save(tmp_path / "ref" / "9999.png")
    with pytest.raises(ConfigurationError, match=r"9999\.png is 32×32×1, but .* is 28×28×1"):
        load_reference(tmp_path / "ref", digits, progress=False)
    (tmp_path / "ref" / "9999.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ConfigurationError, match=r"9999\.png cannot be read"):
        load_reference(tmp_path / "ref", digits, progress=False)


def test_missing_source(tmp_path: Path, digits: DigitFeatureExtractor) -> None:
    with pytest.raises(ConfigurationError, match="does not exist; pass a folder of images"):
        load_reference(tmp_path / "nowhere", digits)
    (tmp_path / "stats.txt").write_text("mu sigma")
    with pytest.raises(ConfigurationError, match=r"neither a folder of images nor an \.npz"):
        load_reference(tmp_path / "stats.txt", digits)


# --- .npz files and clean-fid names ---------------------------------------------------------


def test_npz_with_missing_keys(tmp_path: Path, digits: DigitFeatureExtractor) -> None:
    np.savez(tmp_path / "half.npz", mu=np.zeros(128))
    with pytest.raises(ConfigurationError, match=r"lacks \['sigma'\] \(it holds \['mu'\]\)"):
        load_reference(tmp_path / "half.npz", digits)


def test_npz_of_the_wrong_dimension(tmp_path: Path, digits: DigitFeatureExtractor) -> None:
    np.savez(tmp_path / "inception.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(ConfigurationError, match="2048-d statistics but the digits extractor"):
        load_reference(tmp_path / "inception.npz", digits)


def test_npz_of_another_extractor(tmp_path: Path, digits: DigitFeatureExtractor) -> None:
    np.savez(tmp_path / "other.npz", mu=np.zeros(128), sigma=np.eye(128), feature_net="0" * 64)
    with pytest.raises(ConfigurationError, match="was computed with extractor digits:0000"):
        load_reference(tmp_path / "other.npz", digits)


def test_edm_layout_npz_is_accepted(tmp_path: Path, digits: DigitFeatureExtractor) -> None:
    np.savez(tmp_path / "edm.npz", mu=np.ones(128), sigma=2 * np.eye(128))
    statistics = load_reference(tmp_path / "edm.npz", digits)
    assert statistics.count is None and statistics.feature_dim == 128
    with pytest.raises(ConfigurationError, match="holds no reference features"):
        load_reference(tmp_path / "edm.npz", digits, need_features=True)


def test_cleanfid_statistics_not_available_offline(tmp_path: Path, digits) -> None:
    class InceptionLike:
        name, identity, feature_dim = "inception", "inception-clean:" + "0" * 64, 2048

    with pytest.raises(ConfigurationError) as error:
        load_reference("cleanfid:cifar10/train/32", InceptionLike())
    message = str(error.value)
    assert "cifar10_clean_train_32.npz" in message
    assert "https://www.cs.cmu.edu/~clean-fid/stats/cifar10_clean_train_32.npz" in message
    with pytest.raises(ConfigurationError, match=r"use objective\.features inception"):
        load_reference("cleanfid:cifar10/train/32", digits)
    with pytest.raises(ConfigurationError, match="must read cleanfid:NAME/SPLIT/RES"):
        load_reference("cleanfid:cifar10", InceptionLike())


# --- The shipped MNIST reference and what the digit features tell apart ---------------------


def test_shipped_mnist_reference_matches_a_recomputation(
    digits: DigitFeatureExtractor, mnist_digit_features: np.ndarray, tmp_path: Path
) -> None:
    shipped = load_reference(MNIST_REFERENCE_PATH, digits, need_features=True)
    assert shipped.count == 10000 and shipped.extractor == digits.identity
    mu, sigma = gaussian_statistics(mnist_digit_features)
    # The features are float32 sums whose order follows the BLAS threads of the process:
    # a covariance entry near zero moves by ~1e-7 between thread counts.
    np.testing.assert_allclose(shipped.mu, mu, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(shipped.sigma, sigma, rtol=1e-6, atol=1e-6)
    assert shipped.features.shape == (2000, 128)
    assert frechet_distance(shipped.mu, shipped.sigma, mu, sigma) < 1e-8


def write_idx(folder: Path, digits_u8: np.ndarray) -> None:
    """An MNIST-format (IDX, uncompressed) test set of the given digits."""
    folder.mkdir(parents=True)
    count = len(digits_u8)
    header = np.array([2051, count, 28, 28], dtype=">i4").tobytes()
    (folder / "t10k-images-idx3-ubyte").write_bytes(header + digits_u8.tobytes())
    labels = np.array([2049, count], dtype=">i4").tobytes() + bytes(count)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(labels)


def test_builder_writes_what_the_loader_reads(
    tmp_path: Path, mnist_digits: np.ndarray, digits: DigitFeatureExtractor
) -> None:
    write_idx(tmp_path / "mnist", mnist_digits[:100])
    path = build_mnist_reference(output=tmp_path / "ref.npz", mnist_folder=tmp_path / "mnist")
    built = load_reference(path, digits, need_features=True)
    mu, sigma = gaussian_statistics(digits(as_images(mnist_digits[:100])))
    assert built.count == 100 and built.features.shape == (100, 128)
    np.testing.assert_allclose(built.mu, mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(built.sigma, sigma, rtol=1e-5, atol=1e-6)


def gaussian_noise_images(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 1, 28, 28, generator=generator).clamp(-1.0, 1.0)


def test_fd_of_two_mnist_halves_is_far_below_mnist_against_noise(
    digits: DigitFeatureExtractor, mnist_digit_features: np.ndarray
) -> None:
    n = 500
    first, second = mnist_digit_features[:n], mnist_digit_features[n : 2 * n]
    noise = digits(gaussian_noise_images(n, seed=0))
    same = frechet_distance(*gaussian_statistics(first), *gaussian_statistics(second))
    different = frechet_distance(*gaussian_statistics(first), *gaussian_statistics(noise))
    assert 0 < same < different / 50, (same, different)


def test_kid_is_near_zero_for_mnist_halves_and_positive_against_noise(
    digits: DigitFeatureExtractor, mnist_digit_features: np.ndarray
) -> None:
    n = 500
    first, second = mnist_digit_features[:n], mnist_digit_features[n : 2 * n]
    noise = digits(gaussian_noise_images(n, seed=1))
    same = kernel_inception_distance(first, second, num_subsets=20)
    different = kernel_inception_distance(first, noise, num_subsets=20)
    assert different > 0.5
    assert abs(same) < different / 100, (same, different)


def test_reference_statistics_are_checked(digits: DigitFeatureExtractor) -> None:
    statistics = ReferenceStatistics.from_statistics(np.zeros(128), np.eye(128), source="test")
    assert load_reference(statistics, digits) is statistics
    with pytest.raises(ConfigurationError, match="expected \\[D\\] and \\[D, D\\]"):
        ReferenceStatistics.from_statistics(np.zeros(3), np.eye(4), source="test")


def test_running_statistics_match_the_two_pass_ones_even_far_from_zero() -> None:
    from skiptune.objectives._reference import _RunningStatistics

    rng = np.random.default_rng(5)
    features = 1e6 + rng.normal(size=(700, 8)) @ rng.normal(size=(8, 8))
    running = _RunningStatistics()
    for start in range(0, 700, 256):
        running.add(features[start : start + 256])
    mu, sigma = gaussian_statistics(features)
    running_mu, running_sigma = running.result()
    np.testing.assert_allclose(running_mu, mu, rtol=1e-12)
    np.testing.assert_allclose(running_sigma, sigma, rtol=1e-7, atol=1e-7)


def test_folder_reference_with_features_for_kid(
    tmp_path: Path, mnist_digits: np.ndarray, counting: CountingExtractor
) -> None:
    write_pngs(tmp_path / "ref", mnist_digits[:12])
    cache = DirectoryStatisticsCache(tmp_path / "stats")
    load_reference(tmp_path / "ref", counting, cache=cache, progress=False)
    with_features = load_reference(
        tmp_path / "ref", counting, cache=cache, progress=False, need_features=True
    )
    # KID needs the features themselves, which the cache does not hold: computed again.
    assert counting.images_seen == 24
    assert with_features.features.shape == (12, 128)
    assert with_features.features.dtype == np.float32
