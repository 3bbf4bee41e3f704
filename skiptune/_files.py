"""Writing files so that a crash never leaves a half-written one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["save_torch_atomically"]


def save_torch_atomically(payload: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``.

    The rename is atomic on POSIX file systems: a reader sees the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)
    return path
