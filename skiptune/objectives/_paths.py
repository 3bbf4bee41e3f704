"""Where skiptune finds its shipped assets."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ASSETS_DIR"]

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
"""``skiptune/assets/``: the demonstration model, digit feature net and MNIST reference."""
