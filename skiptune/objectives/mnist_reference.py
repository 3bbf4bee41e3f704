"""Build the shipped MNIST reference statistics: ``skiptune/assets/mnist_reference.npz``.

Run ``python -m skiptune.objectives.mnist_reference [--out PATH] [--mnist FOLDER]``. The
digit features of all 10,000 MNIST test digits, taken at the demonstration model's
resolution (28×28, [-1, 1]) and adapted by the digit extractor exactly as generated images
are (8-bit, padded to 32×32 with background), give the mean and covariance that the
demonstration model's proxy FID compares against.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from skiptune._files import write_atomically
from skiptune.errors import SkiptuneError
from skiptune.objectives._features import DigitFeatureExtractor
from skiptune.objectives._maths import gaussian_statistics
from skiptune.objectives._paths import ASSETS_DIR

__all__ = ["MNIST_REFERENCE_PATH", "build_mnist_reference", "main", "mnist_features"]

MNIST_REFERENCE_PATH = ASSETS_DIR / "mnist_reference.npz"
KID_SAMPLE_SIZE = 2000
"""Reference features shipped for KID: a seeded subset, enough for its ≤ 1,000-row subsets."""

_BATCH = 500


def mnist_features(
    extractor: DigitFeatureExtractor,
    *,
    folder: str | os.PathLike[str] | None = None,  # MNIST IDX folder; default: load_mnist's
) -> np.ndarray:
    """Digit features float64 [10000, D] of the MNIST test set, images at 28×28 in [-1, 1]."""
    from skiptune.data.mnist import load_mnist

    digits, _labels = load_mnist(folder)
    images = torch.from_numpy(digits).unsqueeze(1).to(torch.float32).div_(127.5).sub_(1.0)
    return np.concatenate(
        [extractor(images[start : start + _BATCH]) for start in range(0, len(images), _BATCH)]
    )


def build_mnist_reference(
    *,
    output: str | os.PathLike[str] = MNIST_REFERENCE_PATH,
    feature_net: str | os.PathLike[str] | None = None,  # default: the shipped digit net
    mnist_folder: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the MNIST reference ``.npz`` and return its path.

    Keys: ``mu`` float64 [D], ``sigma`` float64 [D, D], ``count`` (10,000), ``feature_net``
    (the digit net's fingerprint), ``extractor`` (the extractor identity) and ``features``
    (float32 [2000, D], a seeded subset for KID). Written with :func:`write_atomically`.
    """
    extractor = DigitFeatureExtractor.from_file(feature_net, device="cpu")
    features = mnist_features(extractor, folder=mnist_folder)
    mu, sigma = gaussian_statistics(features)
    kept = min(KID_SAMPLE_SIZE, len(features))
    rows = np.sort(np.random.default_rng(0).choice(len(features), kept, replace=False))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(output, lambda handle: np.savez(
        handle,
        mu=mu,
        sigma=sigma,
        count=np.int64(len(features)),
        feature_net=np.array(extractor.identity.removeprefix("digits:")),
        extractor=np.array(extractor.identity),
        features=features[rows].astype(np.float32),
    ), writes="statistics.npz")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MNIST_REFERENCE_PATH, help="output .npz")
    parser.add_argument("--feature-net", type=Path, default=None, help="digit net .pt")
    parser.add_argument("--mnist", type=Path, default=None, help="folder of the MNIST IDX files")
    args = parser.parse_args(argv)
    try:
        path = build_mnist_reference(
            output=args.out, feature_net=args.feature_net, mnist_folder=args.mnist
        )
    except SkiptuneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
