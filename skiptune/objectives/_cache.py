"""Caches of reference statistics: a tiny protocol and a directory of ``.npz`` files."""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from skiptune._files import write_atomically
from skiptune.downloads import cache_dir
from skiptune.errors import ConfigurationError

__all__ = ["DirectoryStatisticsCache", "StatisticsCache", "statistics_key"]

_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


@runtime_checkable
class StatisticsCache(Protocol):
    """Stores (mu, sigma) of reference features under a key (see :func:`statistics_key`).

    ``get`` returns ``None`` on a miss; ``put`` may overwrite. ``meta`` is a JSON-able
    mapping describing the entry (source, count, extractor identity…), for people and audits.
    """

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray] | None: ...

    def put(
        self, key: str, mu: np.ndarray, sigma: np.ndarray, *, meta: Mapping[str, Any]
    ) -> None: ...


def statistics_key(*, content_hash: str, extractor_identity: str) -> str:
    """The cache key of statistics: hex SHA-256 of the source's content hash and the extractor.

    Statistics depend on both the images and the network (and its preprocessing) that
    turned them into features, so either changing gives a new key.
    """
    text = f"skiptune-reference-v1\n{content_hash}\n{extractor_identity}"
    return hashlib.sha256(text.encode()).hexdigest()


class DirectoryStatisticsCache:
    """One ``<key>.npz`` file (``mu``, ``sigma``, ``meta`` as JSON) per entry in a folder.

    Args:
        path: the folder; default ``<cache>/stats`` with cache ``$SKIPTUNE_CACHE_DIR`` or
            ``~/.cache/skiptune``. Created on the first ``put``.

    Files are written to a temporary file in the same folder and renamed into place, so a
    reader never sees half a file and concurrent writers of one key leave one whole file.
    An unreadable entry counts as a miss and is overwritten by the next ``put``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = cache_dir() / "stats" if path is None else Path(path).expanduser()

    def _file(self, key: str) -> Path:
        if not _KEY_PATTERN.match(key):
            raise ConfigurationError(
                f"cache key {key!r} is not a plain file name; use statistics_key(...)"
            )
        return self.path / f"{key}.npz"

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(mu, sigma) float64 stored under ``key``, or None."""
        file = self._file(key)
        if not file.is_file():
            return None
        try:
            with np.load(file, allow_pickle=False) as data:
                mu = np.asarray(data["mu"], dtype=np.float64)
                sigma = np.asarray(data["sigma"], dtype=np.float64)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            return None  # a damaged entry is recomputed, not fatal
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            return None
        return mu, sigma

    def put(
        self, key: str, mu: np.ndarray, sigma: np.ndarray, *, meta: Mapping[str, Any]
    ) -> None:
        """Store (mu, sigma) under ``key`` with :func:`write_atomically`.

        A write that fails raises FileAccessError and leaves any older entry as it was.
        """
        file = self._file(key)
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomically(file, lambda handle: np.savez(
            handle,
            mu=np.asarray(mu, np.float64),
            sigma=np.asarray(sigma, np.float64),
            meta=np.array(json.dumps(dict(meta), sort_keys=True, default=str)),
        ), writes="statistics.npz")
