"""Datasets the project ships code for: the MNIST test set behind the demonstration model."""

from __future__ import annotations

from skiptune.data.mnist import (
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
