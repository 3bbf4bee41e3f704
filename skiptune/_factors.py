"""Per-sample factors meet a batch: broadcast, and tiled when guidance doubles the batch."""

from __future__ import annotations

import torch

from skiptune.errors import ConfigurationError

__all__ = ["expand_factor"]


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
