"""Where skiptune finds its shipped assets and keeps its caches, and file hashing."""

from __future__ import annotations

from pathlib import Path

from skiptune._files import sha256_file
from skiptune.downloads import CACHE_DIR_ENV, cache_dir

__all__ = ["ASSETS_DIR", "CACHE_DIR_ENV", "cache_root", "sha256_file"]

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
"""``skiptune/assets/``: the demonstration model, digit feature net and MNIST reference."""


cache_root = cache_dir
"""skiptune's cache folder: the one :mod:`skiptune.downloads` fills (``$SKIPTUNE_CACHE_DIR``)."""
