"""FreeU (Si et al., CVPR 2024, arXiv 2309.11497): backbone and skip factors of the first up stages.

FreeU acts where Skip-Tuning acts, where a decoder stage consumes its skips. In the first two
up stages (the deepest, ``up_blocks[0]`` and ``up_blocks[1]`` in diffusers), before each
resnet consumes ``cat([h, skip])``:

- the first half of the backbone channels of ``h`` is multiplied by ``b1`` (stage 0) or
  ``b2`` (stage 1);
- the skip is Fourier-filtered: its 2×2 lowest spatial frequencies (after ``fftshift``) are
  multiplied by ``s1`` or ``s2``, the other frequencies kept.

This is diffusers' version (``diffusers.utils.torch_utils.apply_freeu``/``fourier_filter``,
what ``UNet2DConditionModel.enable_freeu(s1, s2, b1, b2)`` runs), which scales the backbone
by a constant; the FreeU repository's later variant, which scales by the normalised channel
mean, is not what diffusers users run, so it is not what skiptune reproduces.

This module holds the factors, plain numbers that are stored, exported and read back without
torch; the tensor maths (``fourier_filter``, ``scale_backbone``) lives in
``skiptune._factors``, beside the other per-sample factors the hooks of ``skiptune.skips``
apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from skiptune.errors import ConfigurationError

__all__ = ["FREEU_DEFAULTS", "FreeU"]


@dataclass(frozen=True)
class FreeU:
    """The four FreeU factors, named as ``enable_freeu`` names them.

    Args:
        b1, b2: backbone factors of up stage 0 (deepest) and 1: the first half of the
            channels of the decoder features is multiplied by them (FreeU uses b > 1).
        s1, s2: skip factors of up stage 0 and 1: the lowest frequencies of the skip are
            multiplied by them (FreeU uses s < 1).

    ``FreeU()`` is neutral (all 1): the plain model, bit for bit. So is any FreeU with a
    factor 0: diffusers' up blocks run FreeU only when all four factors are non-zero
    (``enable_freeu(s1=0, ...)`` turns it off), and skiptune measures what diffusers runs.
    """

    b1: float = 1.0
    b2: float = 1.0
    s1: float = 1.0
    s2: float = 1.0

    def __post_init__(self) -> None:
        for name in ("b1", "b2", "s1", "s2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and value >= 0
            ):
                raise ConfigurationError(f"FreeU {name} must be a finite number ≥ 0, got {value!r}")
            object.__setattr__(self, name, float(value))

    @property
    def is_neutral(self) -> bool:
        """Whether these factors change nothing: all 1, or one of them 0 (FreeU off)."""
        values = (self.b1, self.b2, self.s1, self.s2)
        return all(v == 1.0 for v in values) or any(v == 0.0 for v in values)

    def stage(self, index: int) -> tuple[float, float]:
        """(b, s) of up stage ``index`` (0 or 1); every later stage is neutral (1, 1)."""
        if index == 0:
            return self.b1, self.s1
        if index == 1:
            return self.b2, self.s2
        return 1.0, 1.0

    def to_dict(self) -> dict[str, float]:
        """The keyword arguments of ``pipe.enable_freeu(**values)``."""
        return {"s1": self.s1, "s2": self.s2, "b1": self.b1, "b2": self.b2}

    @classmethod
    def from_dict(cls, data: dict) -> FreeU:
        unknown = set(data) - {"b1", "b2", "s1", "s2"}
        if unknown:
            raise ConfigurationError(f"unknown FreeU keys {sorted(unknown)}; use b1, b2, s1, s2")
        return cls(**{k: float(v) for k, v in data.items()})


# The values the FreeU authors recommend per model family (FreeU README; diffusers' docs).
FREEU_DEFAULTS: dict[str, FreeU] = {
    "sd1": FreeU(b1=1.5, b2=1.6, s1=0.9, s2=0.2),
    "sd2": FreeU(b1=1.4, b2=1.6, s1=0.9, s2=0.2),
    "sdxl": FreeU(b1=1.3, b2=1.4, s1=0.9, s2=0.2),
}
