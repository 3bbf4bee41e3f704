"""σ grids for the samplers: decreasing noise levels that end in 0."""

from __future__ import annotations

import math

import torch

from skiptune._checks import is_whole
from skiptune.errors import ConfigurationError
from skiptune.steps import StepGrid

__all__ = ["ddim_sigmas", "grid_sigmas", "karras_sigmas"]


def _check_num_steps(num_steps: int) -> None:
    """Reject a step count that is not a whole number ≥ 1."""
    if not is_whole(num_steps) or num_steps < 1:
        raise ConfigurationError(
            f"num_steps must be a whole number ≥ 1, got {num_steps!r}; pass e.g. num_steps=10"
        )


def karras_sigmas(
    num_steps: int,                        # σ values before the final 0 (= steps of the sampler)
    *,
    sigma_min: float,                      # last nonzero σ
    sigma_max: float,                      # first σ
    schedule_exponent: float = 7.0,        # EDM's ρ in eq. 5; > 1 packs steps toward σ_min
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Noise levels of EDM's sampler (Karras et al. 2022, eq. 5), σ_max down to σ_min, then 0.

    Returns ``num_steps + 1`` values: σ_i = (σ_max^(1/p) + i/(n−1)·(σ_min^(1/p) − σ_max^(1/p)))^p
    for i = 0..n−1 with p = ``schedule_exponent``, followed by 0. Computed in float64 and
    returned as ``dtype``. A single step gives ``[σ_max, 0]``.
    """
    _check_num_steps(num_steps)
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max) and 0 < sigma_min < sigma_max):
        raise ConfigurationError(
            f"need 0 < sigma_min < sigma_max, both finite, got sigma_min={sigma_min}, "
            f"sigma_max={sigma_max}; pass the model's trained σ range"
        )
    if not math.isfinite(schedule_exponent) or schedule_exponent <= 0:
        raise ConfigurationError(
            f"schedule_exponent must be a finite number > 0, got {schedule_exponent}; EDM uses 7"
        )
    ramp = torch.linspace(0.0, 1.0, num_steps, dtype=torch.float64)
    inverse = 1.0 / schedule_exponent
    top, bottom = sigma_max**inverse, sigma_min**inverse
    sigmas = (top + ramp * (bottom - top)) ** schedule_exponent
    sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    return sigmas.to(device=device, dtype=dtype)


def grid_sigmas(
    num_steps: int,                        # σ values before the final 0 (= steps of the sampler)
    grid: StepGrid,                        # the grid's exponent and ends
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The float32 σ list of a searched step grid: :func:`karras_sigmas` with its numbers."""
    return karras_sigmas(num_steps, sigma_min=grid.sigma_min, sigma_max=grid.sigma_max,
                         schedule_exponent=grid.schedule_exponent, device=device)


def ddim_sigmas(
    num_steps: int,                        # σ values before the final 0 (= steps of the sampler)
    discrete_sigmas: torch.Tensor,         # ascending σ of the training timesteps 0..T−1
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """σ of ``num_steps`` training timesteps with DDIM's "trailing" spacing (as diffusers), then 0.

    With T training timesteps the chosen ones are round(T·(n − k)/n) − 1 for k = 0..n−1 (the
    first is always T − 1, the noisiest), returned as their σ in decreasing order followed by
    0: ``num_steps + 1`` values. ``device`` defaults to that of ``discrete_sigmas``.
    """
    _check_num_steps(num_steps)
    if discrete_sigmas.ndim != 1 or discrete_sigmas.numel() == 0:
        raise ConfigurationError(
            f"discrete_sigmas must be a non-empty 1-D tensor, got shape "
            f"{tuple(discrete_sigmas.shape)}; pass the model's table of training σ"
        )
    table = discrete_sigmas.detach().to(device="cpu", dtype=torch.float64)
    if not (table[0] > 0 and bool((table[1:] > table[:-1]).all())):
        raise ConfigurationError(
            "discrete_sigmas must be positive and strictly increasing (timestep 0 first); "
            "pass the training σ in ascending order"
        )
    num_train = table.numel()
    if num_steps > num_train:
        raise ConfigurationError(
            f"cannot pick {num_steps} timesteps from a model trained on {num_train}; "
            f"use num_steps ≤ {num_train}"
        )
    # Exact T·(n − k)/n, rounded half to even like np.round (diffusers' float arange can land a
    # hair off an exact half and round the other way).
    timesteps = [round(num_train * (num_steps - k) / num_steps) - 1 for k in range(num_steps)]
    sigmas = torch.cat([table[timesteps], table.new_zeros(1)])
    return sigmas.to(device=discrete_sigmas.device if device is None else device, dtype=dtype)
