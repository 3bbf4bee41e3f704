"""The demonstration model that ships with skiptune, and its training on MNIST.

:func:`checkpoint` is where the installed demo U-Net lies, from any folder; ``train`` and
``train_features`` made it and its digit feature network (which belongs to the metric:
``skiptune.objectives`` defines and loads it).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["checkpoint"]


def checkpoint() -> Path:
    """The installed demo U-Net's checkpoint: 28×28×1 MNIST digits, 9 skips (an absolute path,
    wherever skiptune is installed and whatever the working folder)."""
    return Path(__file__).resolve().parents[1] / "assets" / "demo_unet.pt"
