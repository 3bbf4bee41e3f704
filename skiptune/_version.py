"""The installed skiptune version, stamped into what skiptune writes (database rows, exports)."""

from __future__ import annotations

import importlib.metadata

__all__ = ["skiptune_version"]


def skiptune_version() -> str:
    """The installed skiptune version, or ``"unknown"`` when run from a source tree."""
    try:
        return importlib.metadata.version("skiptune")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
