"""Where skiptune finds its shipped assets and keeps its caches, and file hashing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["ASSETS_DIR", "CACHE_DIR_ENV", "cache_root", "sha256_file"]

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
"""``skiptune/assets/``: the demonstration model, digit feature net and MNIST reference."""

CACHE_DIR_ENV = "SKIPTUNE_CACHE_DIR"


def cache_root() -> Path:
    """skiptune's cache folder: ``$SKIPTUNE_CACHE_DIR`` if set, else ``~/.cache/skiptune``."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "skiptune"


def sha256_file(path: Path, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks so large weights need little memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
