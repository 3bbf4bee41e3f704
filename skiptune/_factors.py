"""Factors meet tensors: per-sample factors broadcast over a batch (tiled when guidance
doubles it), and FreeU's backbone scaling and Fourier filter of a skip."""

from __future__ import annotations

import torch

from skiptune.errors import ConfigurationError

__all__ = [
    "Factor",
    "expand_factor",
    "fourier_filter",
    "is_neutral_factor",
    "low_frequency_mask",
    "scale_backbone",
]

Factor = float | torch.Tensor


def expand_factor(factor: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-sample factor [B] as [batch, 1, …] in the dtype and device of ``x``.

    When ``x`` holds k·B samples (classifier-free guidance runs ``cat([uncond, cond])``, so
    sample j sits at j and B + j), the factors are tiled k times: both halves of the doubled
    batch get the same factor.
    """
    factor = factor.reshape(-1).to(device=x.device, dtype=x.dtype)
    count, batch = factor.shape[0], x.shape[0]
    if batch != count:
        if count == 0 or batch % count:
            raise ConfigurationError(
                f"{count} per-sample factors cannot cover a batch of {batch}; pass one factor "
                "per sample of the batch"
            )
        factor = factor.repeat(batch // count)
    return factor.view(-1, *([1] * (x.ndim - 1)))


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
