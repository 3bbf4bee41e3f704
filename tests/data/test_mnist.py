"""The MNIST reader on the real test-set files, and the split and model-input helpers."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from skiptune.data import (
    DEFAULT_MNIST_DIR,
    IMAGES_FILENAME,
    LABELS_FILENAME,
    MNIST_DIR_ENV,
    MNIST_RESOLUTION,
    load_mnist,
    mnist_dir,
    read_idx_images,
    read_idx_labels,
    split_indices,
    to_model_images,
)
from skiptune.errors import ConfigurationError

LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FIRST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    return load_mnist()


@pytest.fixture
def raw_folder(tmp_path: Path) -> Path:
    """A folder with un-gzipped copies of both files."""
    for name in (IMAGES_FILENAME, LABELS_FILENAME):
        data = gzip.decompress((mnist_dir() / name).read_bytes())
        (tmp_path / name.removesuffix(".gz")).write_bytes(data)
    return tmp_path


def test_test_set_has_the_documented_content(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,)
    assert np.bincount(labels, minlength=10).tolist() == LABEL_COUNTS
    assert labels[:10].tolist() == FIRST_LABELS
    assert images.mean() == pytest.approx(33.79, abs=0.005)


def test_raw_and_gzip_files_read_the_same(
    mnist: tuple[np.ndarray, np.ndarray], raw_folder: Path
) -> None:
    images, labels = mnist
    np.testing.assert_array_equal(read_idx_images(raw_folder / "t10k-images-idx3-ubyte"), images)
    np.testing.assert_array_equal(read_idx_labels(raw_folder / "t10k-labels-idx1-ubyte"), labels)
    raw_images, raw_labels = load_mnist(raw_folder)
    np.testing.assert_array_equal(raw_images, images)
    np.testing.assert_array_equal(raw_labels, labels)


def test_truncated_raw_file_is_a_clear_error(raw_folder: Path) -> None:
    path = raw_folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ConfigurationError, match=r"t10k-images-idx3-ubyte.*declares 7840000"):
        read_idx_images(path)


def test_truncated_gzip_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / IMAGES_FILENAME
    path.write_bytes((mnist_dir() / IMAGES_FILENAME).read_bytes()[:5000])
    with pytest.raises(ConfigurationError, match=r"t10k-images-idx3-ubyte\.gz.*gzip"):
        read_idx_images(path)


def test_file_shorter_than_its_header_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(b"\x00\x00\x08\x03")
    with pytest.raises(ConfigurationError, match=r"short has 4 bytes, fewer than its 16-byte"):
        read_idx_images(path)


def test_wrong_magic_number_is_a_clear_error(raw_folder: Path) -> None:
    labels_path = raw_folder / "t10k-labels-idx1-ubyte"
    with pytest.raises(ConfigurationError, match=r"t10k-labels-idx1-ubyte has magic number 2049"):
        read_idx_images(labels_path)
    with pytest.raises(ConfigurationError, match="magic number 2051, expected 2049"):
        read_idx_labels(raw_folder / "t10k-images-idx3-ubyte")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=rf"{IMAGES_FILENAME} is missing"):
        load_mnist(tmp_path)


def test_mnist_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MNIST_DIR_ENV, str(tmp_path))
    assert mnist_dir() == tmp_path
    monkeypatch.setenv(MNIST_DIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(ConfigurationError, match=rf"absent.*\${MNIST_DIR_ENV}"):
        mnist_dir()


def test_default_location_is_inside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh clone has no data beside it: the package must read the copy it ships.
    monkeypatch.delenv(MNIST_DIR_ENV, raising=False)
    repository = Path(__file__).resolve().parents[2]
    assert mnist_dir() == DEFAULT_MNIST_DIR
    assert DEFAULT_MNIST_DIR.resolve().is_relative_to(repository)
    assert (DEFAULT_MNIST_DIR / "README.md").is_file()


@pytest.mark.parametrize("name", [IMAGES_FILENAME, LABELS_FILENAME])
def test_shipped_files_match_the_checksums_in_their_readme(name: str) -> None:
    readme = (DEFAULT_MNIST_DIR / "README.md").read_text()
    digest = hashlib.sha256((DEFAULT_MNIST_DIR / name).read_bytes()).hexdigest()
    assert f"| {name} |" in readme and digest in readme


def test_split_is_deterministic_disjoint_and_covering() -> None:
    train, held_out = split_indices()
    assert (len(train), len(held_out)) == (8000, 2000)
    assert train.dtype == held_out.dtype == np.int64
    assert np.intersect1d(train, held_out).size == 0
    np.testing.assert_array_equal(np.union1d(train, held_out), np.arange(10000))
    again_train, again_held_out = split_indices(10000, held_out=2000, seed=0)
    np.testing.assert_array_equal(again_train, train)
    np.testing.assert_array_equal(again_held_out, held_out)
    assert not np.array_equal(split_indices(seed=1)[1], held_out)


def test_split_rejects_impossible_sizes() -> None:
    with pytest.raises(ConfigurationError, match="cannot hold out 11 of 10 images"):
        split_indices(10, held_out=11)


def test_model_images_are_padded_with_background(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    images = mnist[0][:64]
    x = to_model_images(images)
    assert x.shape == (64, 1, MNIST_RESOLUTION, MNIST_RESOLUTION) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.max() == 1.0
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert torch.all(x[:, 0, border] == -1.0)
    expected = torch.from_numpy(images).float() / 127.5 - 1.0
    torch.testing.assert_close(x[:, 0, 2:30, 2:30], expected)


def test_model_images_at_other_resolutions(mnist: tuple[np.ndarray, np.ndarray]) -> None:
    x = to_model_images(mnist[0][:8], resolution=64)
    assert x.shape == (8, 1, 64, 64)
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert torch.all(x[:, :, :2] == -1.0)


def test_model_images_reject_float_input() -> None:
    with pytest.raises(ConfigurationError, match="uint8 array"):
        to_model_images(np.zeros((2, 28, 28), dtype=np.float32))
