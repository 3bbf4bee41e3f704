"""Read the MNIST test set from its IDX files and turn it into model inputs.

The files are the official test split (10,000 digits, 28×28, uint8 in [0, 255]) in the
IDX format, gzip-compressed or not: images carry a 16-byte header (magic 2051, count,
rows, cols), labels an 8-byte header (magic 2049, count), all big-endian int32.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from skiptune.errors import ConfigurationError

__all__ = [
    "DEFAULT_MNIST_DIR",
    "IMAGES_FILENAME",
    "LABELS_FILENAME",
    "MNIST_DIR_ENV",
    "MNIST_RESOLUTION",
    "load_mnist",
    "mnist_dir",
    "read_idx_images",
    "read_idx_labels",
    "split_indices",
    "to_model_images",
]

MNIST_RESOLUTION = 32
"""Side of the digit feature network's input (28 padded to 32); the demo U-Net samples 28×28."""

MNIST_DIR_ENV = "SKIPTUNE_MNIST_DIR"
IMAGES_FILENAME = "t10k-images-idx3-ubyte.gz"
LABELS_FILENAME = "t10k-labels-idx1-ubyte.gz"

_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049
_GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_MNIST_DIR = Path(__file__).resolve().parents[1] / "assets" / "mnist"
"""Where the package ships the MNIST test set (``skiptune/assets/mnist``)."""


def mnist_dir() -> Path:
    """The folder holding the MNIST IDX files.

    ``$SKIPTUNE_MNIST_DIR`` if set, else :data:`DEFAULT_MNIST_DIR`, inside the package.

    Raises:
        ConfigurationError: the folder does not exist.
    """
    configured = os.environ.get(MNIST_DIR_ENV)
    folder = Path(configured) if configured else DEFAULT_MNIST_DIR
    if not folder.is_dir():
        source = f"${MNIST_DIR_ENV}" if configured else "the default location"
        raise ConfigurationError(
            f"MNIST folder {folder} (from {source}) does not exist; set ${MNIST_DIR_ENV} "
            f"to the folder holding {IMAGES_FILENAME} and {LABELS_FILENAME}"
        )
    return folder


def _read_bytes(path: Path) -> bytes:
    """The decompressed content of an IDX file, gzip-compressed or raw."""
    if not path.is_file():
        raise ConfigurationError(
            f"MNIST file {path} is missing; point ${MNIST_DIR_ENV} at the folder that holds it"
        )
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise ConfigurationError(
            f"MNIST file {path} is not a readable gzip file ({e}); replace it with an intact copy"
        ) from e


def _parse_idx(path: Path, *, magic: int, header_ints: int) -> tuple[tuple[int, ...], bytes]:
    """Check an IDX file's magic number and sizes; return its dimensions and payload."""
    data = _read_bytes(path)
    header_size = 4 * header_ints
    if len(data) < header_size:
        raise ConfigurationError(
            f"MNIST file {path} has {len(data)} bytes, fewer than its {header_size}-byte "
            "header; replace it with an intact copy"
        )
    header = np.frombuffer(data[:header_size], dtype=">i4")
    if int(header[0]) != magic:
        raise ConfigurationError(
            f"MNIST file {path} has magic number {int(header[0])}, expected {magic}; "
            "check that it is the right IDX file"
        )
    dims = tuple(int(d) for d in header[1:])
    if any(d < 0 for d in dims):
        raise ConfigurationError(
            f"MNIST file {path} declares negative dimensions {dims}; replace it with an intact copy"
        )
    expected = int(np.prod(dims, dtype=np.int64))
    payload = data[header_size:]
    if len(payload) != expected:
        raise ConfigurationError(
            f"MNIST file {path} holds {len(payload)} data bytes, its header declares "
            f"{expected}; replace it with an intact copy"
        )
    return dims, payload


def read_idx_images(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX image file (magic 2051), gzip-compressed or raw.

    Returns:
        uint8 array [N, rows, cols] with pixel values in [0, 255] (0 is background).

    Raises:
        ConfigurationError: the file is missing, truncated or not an IDX image file.
    """
    path = Path(path)
    dims, payload = _parse_idx(path, magic=_IMAGES_MAGIC, header_ints=4)
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims).copy()


def read_idx_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX label file (magic 2049), gzip-compressed or raw.

    Returns:
        uint8 array [N] of class labels (0–9 for MNIST).

    Raises:
        ConfigurationError: the file is missing, truncated or not an IDX label file.
    """
    path = Path(path)
    dims, payload = _parse_idx(path, magic=_LABELS_MAGIC, header_ints=2)
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims).copy()


def _find_file(folder: Path, gz_name: str) -> Path:
    """``folder/gz_name``, or its un-gzipped twin when only that one exists."""
    raw = folder / gz_name.removesuffix(".gz")
    return raw if raw.is_file() and not (folder / gz_name).is_file() else folder / gz_name


def load_mnist(folder: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load the MNIST test set.

    Args:
        folder: folder holding ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``
            (or the same names without ``.gz``); default :func:`mnist_dir`.

    Returns:
        ``(images, labels)``: uint8 [10000, 28, 28] in [0, 255] and uint8 [10000] in 0–9.

    Raises:
        ConfigurationError: a file is missing or malformed, or the two counts differ.
    """
    folder = mnist_dir() if folder is None else Path(folder)
    images = read_idx_images(_find_file(folder, IMAGES_FILENAME))
    labels = read_idx_labels(_find_file(folder, LABELS_FILENAME))
    if len(images) != len(labels):
        raise ConfigurationError(
            f"MNIST folder {folder} holds {len(images)} images but {len(labels)} labels; "
            "use an images file and a labels file of the same split"
        )
    return images, labels


def to_model_images(images: np.ndarray, resolution: int = MNIST_RESOLUTION) -> torch.Tensor:
    """Turn uint8 digits into the models' input.

    Args:
        images: uint8 array [N, 28, 28] (or [N, H, W]) with pixels in [0, 255].
        resolution: side of the output; the digits are first centred on a background of
            side ``max(H, W, 32)`` (so 28 → 32 by padding), then resized bilinearly if needed.

    Returns:
        float32 tensor [N, 1, resolution, resolution] in [-1, 1]; background is -1.

    Raises:
        ConfigurationError: wrong dtype or shape, or a resolution below 1.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
        received = getattr(images, "dtype", type(images).__name__)
        raise ConfigurationError(
            f"to_model_images expects a uint8 array [N, H, W], got {received} with shape "
            f"{getattr(images, 'shape', None)}; pass the output of load_mnist"
        )
    if resolution < 1:
        raise ConfigurationError(f"resolution must be a positive integer, got {resolution}")
    x = torch.from_numpy(images).to(torch.float32).div_(127.5).sub_(1.0).unsqueeze(1)
    height, width = images.shape[1:]
    side = max(height, width, MNIST_RESOLUTION)
    top, left = (side - height) // 2, (side - width) // 2
    x = F.pad(x, (left, side - width - left, top, side - height - top), value=-1.0)
    if side != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
        x = x.clamp_(-1.0, 1.0)
    return x


def split_indices(
    num_images: int = 10000,  # size of the set to split
    *,
    held_out: int = 2000,  # how many go to the held-out part
    seed: int = 0,  # seed of numpy's default Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(num_images)`` into a training part and a held-out part.

    The split is one permutation drawn by ``np.random.default_rng(seed)``, so it is fully
    described by ``{"seed": seed, "held_out": held_out}`` (the form stored in checkpoints).

    Returns:
        ``(train_idx, held_out_idx)``: int64 arrays, each sorted ascending, disjoint, of sizes
        ``num_images - held_out`` and ``held_out``, together covering ``range(num_images)``.

    Raises:
        ConfigurationError: ``held_out`` is not in [0, num_images].
    """
    if num_images < 0 or not 0 <= held_out <= num_images:
        raise ConfigurationError(
            f"cannot hold out {held_out} of {num_images} images; choose 0 <= held_out <= num_images"
        )
    order = np.random.default_rng(seed).permutation(num_images).astype(np.int64)
    return np.sort(order[held_out:]), np.sort(order[:held_out])
