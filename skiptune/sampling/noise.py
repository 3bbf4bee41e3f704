"""Seeded initial noise: common random numbers across trials, batch splits and devices."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from skiptune._checks import MAX_SEED, is_whole
from skiptune.errors import ConfigurationError

__all__ = ["MAX_SEED", "initial_noise"]


def initial_noise(
    num_samples: int,                      # samples in this batch (≥ 0)
    image_shape: Sequence[int],            # (channels, height, width) of one sample
    *,
    seed: int,                             # seed of global sample 0
    start: int = 0,                        # global index of this batch's first sample
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Unit Gaussian noise [num_samples, *image_shape]; sample j comes from seed + start + j.

    Each sample is drawn in float32 from its own CPU ``torch.Generator`` and only then cast
    and moved, so a sample's noise depends on its global index alone: not on the batch size,
    the device or the dtype (common random numbers across trials).
    """
    if not is_whole(num_samples) or num_samples < 0:
        raise ConfigurationError(
            f"num_samples must be a whole number ≥ 0, got {num_samples!r}; pass e.g. 64"
        )
    if not is_whole(seed) or not is_whole(start) or seed < 0 or start < 0:
        raise ConfigurationError(
            f"seed and start must be whole numbers ≥ 0, got seed={seed!r}, start={start!r}"
        )
    if seed + start + num_samples > MAX_SEED:
        raise ConfigurationError(
            f"seed + start + num_samples must stay below 2**63, got {seed + start + num_samples}; "
            "use a smaller seed"
        )
    shape = tuple(image_shape)
    if not shape or not all(is_whole(size) and size >= 1 for size in shape):
        raise ConfigurationError(
            f"image_shape must be positive whole numbers such as (3, 32, 32), got {image_shape!r}"
        )
    noise = torch.empty((num_samples, *shape), dtype=torch.float32)
    generator = torch.Generator(device="cpu")
    for j in range(num_samples):
        generator.manual_seed(seed + start + j)
        torch.randn(shape, generator=generator, out=noise[j])
    return noise.to(device=device, dtype=dtype)
