"""σ grids for the samplers: decreasing noise levels that end in 0."""

from __future__ import annotations

import math

import torch

from skiptune._checks import is_whole
from skiptune.errors import ConfigurationError
from skiptune.steps import StepGrid

__all__ = ["ddim_sigmas", "grid_sigmas", "karras_sigmas", "lcm_sigmas"]


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
    table = _checked_table(num_steps, discrete_sigmas)
    num_train = table.numel()
    if num_steps > num_train:
        raise ConfigurationError(
            f"cannot pick {num_steps} timesteps from a model trained on {num_train}; "
            f"use num_steps ≤ {num_train}"
        )
    # Exact T·(n − k)/n, rounded half to even like np.round (diffusers' float arange can land a
    # hair off an exact half and round the other way).
    timesteps = [round(num_train * (num_steps - k) / num_steps) - 1 for k in range(num_steps)]
    return _at_timesteps(table, timesteps, discrete_sigmas.device if device is None else device,
                         dtype)


LCM_ORIGINAL_STEPS = 50
"""How many evenly skipped timesteps a Latent Consistency Model is distilled on, unless its
scheduler config says otherwise (``LCMScheduler``'s ``original_inference_steps``)."""


def lcm_sigmas(
    num_steps: int,                        # σ values before the final 0 (= steps of the sampler)
    discrete_sigmas: torch.Tensor,         # ascending σ of the training timesteps 0..T−1
    *,
    original_steps: int = LCM_ORIGINAL_STEPS,  # the LCM's skipping schedule: T/this apart
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """σ of the timesteps a Latent Consistency Model samples at (Luo et al. 2023), then 0.

    As diffusers' ``LCMScheduler.set_timesteps``: the model was distilled on the
    ``original_steps`` timesteps k·c − 1 (c = T // original_steps, k = 1..original_steps);
    ``num_steps`` of them are taken, evenly spaced in index from the noisiest, index
    ⌊j·original_steps/num_steps⌋ for j = 0..n−1 as NumPy computes it (4 of 50 on T = 1000:
    timesteps 999, 759, 499, 259). Returns ``num_steps + 1`` values, decreasing; ``device``
    defaults to that of ``discrete_sigmas``. ConfigurationError for more steps than
    ``original_steps``.
    """
    table = _checked_table(num_steps, discrete_sigmas)
    num_train = table.numel()
    if not is_whole(original_steps) or not 1 <= original_steps <= num_train:
        raise ConfigurationError(
            f"original_steps must be a whole number from 1 to the {num_train} training "
            f"timesteps, got {original_steps!r}; LCMs are distilled on {LCM_ORIGINAL_STEPS}"
        )
    if num_steps > original_steps:
        raise ConfigurationError(
            f"an LCM samples at most the {original_steps} timesteps it was distilled on "
            f"(original_inference_steps), got {num_steps} steps; use at most {original_steps}"
        )
    spacing = num_train // original_steps
    # LCM's floor(linspace(0, original_steps, n, endpoint=False)) in NumPy's float arithmetic,
    # j·(original_steps/n), not exact fractions: 11·(30/22) floors to 14, not 15.
    step = original_steps / num_steps
    timesteps = [(original_steps - math.floor(j * step)) * spacing - 1 for j in range(num_steps)]
    return _at_timesteps(table, timesteps, discrete_sigmas.device if device is None else device,
                         dtype)


def _checked_table(num_steps: int, discrete_sigmas: torch.Tensor) -> torch.Tensor:
    """The training σ table as float64 on the CPU, after checking it and the step count."""
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
    return table


def _at_timesteps(table: torch.Tensor, timesteps: list[int],
                  device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """σ of ``timesteps`` (decreasing) followed by 0."""
    sigmas = torch.cat([table[timesteps], table.new_zeros(1)])
    return sigmas.to(device=device, dtype=dtype)
