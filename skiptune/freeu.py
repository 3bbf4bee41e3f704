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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from skiptune._factors import expand_factor
from skiptune.errors import ConfigurationError

__all__ = [
    "FREEU_DEFAULTS",
    "FreeU",
    "fourier_filter",
    "is_neutral_factor",
    "low_frequency_mask",
    "scale_backbone",
]

Factor = float | torch.Tensor


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


def _per_sample(factor: Factor, x: torch.Tensor) -> Factor:
    """A per-sample factor tensor [B] as [batch, 1, 1, 1] (tiled when the batch is doubled)."""
    if not isinstance(factor, torch.Tensor):
        return factor
    return expand_factor(factor, x)


def low_frequency_mask(
    height: int, width: int, scale: Factor, *, threshold: int = 1,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Multipliers for a centred (``fftshift``-ed) spectrum of size ``height × width``.

    ``scale`` in the ``2·threshold × 2·threshold`` block around the centre (H//2, W//2), the
    lowest frequencies; 1 elsewhere. Float32 of shape [1, 1, H, W] for a number, [B, 1, H, W]
    for a per-sample tensor ``scale`` [B], to broadcast over a spectrum [B, C, H, W].
    """
    count = scale.numel() if isinstance(scale, torch.Tensor) else 1
    mask = torch.ones((count, 1, height, width), device=device)
    row, col = height // 2, width // 2
    window = (..., slice(row - threshold, row + threshold), slice(col - threshold, col + threshold))
    if isinstance(scale, torch.Tensor):
        mask[window] = scale.to(device=mask.device, dtype=mask.dtype).view(-1, 1, 1, 1)
    else:
        mask[window] = scale
    return mask


def fourier_filter(x: torch.Tensor, scale: Factor, *, threshold: int = 1) -> torch.Tensor:
    """Multiply the lowest spatial frequencies of ``x`` [B, C, H, W] by ``scale``.

    The 2-D FFT is centred (``fftshift``) and multiplied by :func:`low_frequency_mask`; the
    inverse FFT's real part comes back in the dtype of ``x`` (the window is not symmetric
    about the centre, so the real part averages part of it with its mirror, exactly as
    diffusers does). The FFT runs in float32, as in diffusers (half precision has no stable
    FFT). ``scale`` is a number or a per-sample tensor [B] (tiled over a doubled batch).
    """
    dtype = x.dtype
    freq = torch.fft.fftshift(torch.fft.fftn(x.to(torch.float32), dim=(-2, -1)), dim=(-2, -1))
    if isinstance(scale, torch.Tensor):
        scale = expand_factor(scale, x).reshape(-1)
    mask = low_frequency_mask(freq.shape[-2], freq.shape[-1], scale, threshold=threshold,
                              device=x.device)
    freq = torch.fft.ifftshift(freq * mask, dim=(-2, -1))
    return torch.fft.ifftn(freq, dim=(-2, -1)).real.to(dtype)


def scale_backbone(h: torch.Tensor, factor: Factor) -> torch.Tensor:
    """``h`` [B, C, H, W] with its first ``C // 2`` channels multiplied by ``factor`` (a copy)."""
    half = h.shape[1] // 2
    out = h.clone()
    out[:, :half] = h[:, :half] * _per_sample(factor, h)
    return out


def is_neutral_factor(factor: Factor) -> bool:
    """Whether ``factor`` (a number or a per-sample tensor) is 1 everywhere."""
    if isinstance(factor, torch.Tensor):
        return bool((factor == 1).all())
    return factor == 1.0
