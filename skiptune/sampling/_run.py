"""Sample a model: the one call the rest of skiptune uses to turn noise into images."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from skiptune._failpoints import failpoint
from skiptune.errors import ConfigurationError, NonFiniteSampleError
from skiptune.sampling.sigmas import ddim_sigmas, grid_sigmas, karras_sigmas
from skiptune.sampling.solvers import SAMPLERS, SamplerCallback, get_sampler
from skiptune.steps import StepGrid

__all__ = ["SamplingModel", "sample", "sigma_grid"]


class SamplingModel(Protocol):
    """What sampling needs of a model (``TunableModel`` meets it)."""

    sigma_min: float
    sigma_max: float
    discrete_sigmas: torch.Tensor | None

    @property
    def device(self) -> torch.device: ...

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, condition: Any = None) -> torch.Tensor:
        ...


def sigma_grid(
    model: SamplingModel,
    *,
    sampler: str,                          # a name in SAMPLERS
    nfe: int,                              # exact number of denoiser calls
    schedule_exponent: float = 7.0,        # Karras grid exponent (ignored by discrete grids)
    steps: StepGrid | None = None,         # a searched grid instead of the sampler's own
) -> torch.Tensor:
    """The σ grid, from the top σ down to 0, on which ``sampler`` spends exactly ``nfe`` calls.

    Karras samplers get EDM's grid over [model.sigma_min, model.sigma_max]; ``ddim`` gets the
    model's discrete training σ (trailing spacing). A ``steps`` grid replaces a Karras grid
    (its exponent and ends; they must lie in the model's σ range); ``ddim`` takes none.
    Float32, on the model's device.
    """
    spec = get_sampler(sampler)
    count = spec.steps_for_nfe(nfe)
    if steps is not None:
        if spec.grid != "karras":
            raise ConfigurationError(
                f"{spec.name} walks the model's training timesteps and takes no step grid; "
                "drop the grid or choose a sampler such as heun"
            )
        steps.check_inside((model.sigma_min, model.sigma_max))
        return grid_sigmas(count, steps, device=model.device)
    if spec.grid == "karras":
        return karras_sigmas(
            count,
            sigma_min=model.sigma_min,
            sigma_max=model.sigma_max,
            schedule_exponent=schedule_exponent,
            device=model.device,
        )
    if spec.grid == "discrete":
        if model.discrete_sigmas is None:
            others = ", ".join(name for name, s in SAMPLERS.items() if s.grid == "karras")
            raise ConfigurationError(
                f"{spec.name} walks a discrete-time model's training timesteps, but this model "
                f"has none (discrete_sigmas is None); choose one of {others}"
            )
        return ddim_sigmas(count, model.discrete_sigmas, device=model.device)
    raise ConfigurationError(f"sampler {spec.name!r} has unknown grid {spec.grid!r}")


def sample(
    model: SamplingModel,
    noise: torch.Tensor,                   # unit Gaussian [N, C, H, W], e.g. initial_noise(...)
    *,
    sampler: str = "heun",                 # a name in SAMPLERS
    nfe: int,                              # exact number of model.denoise calls
    schedule_exponent: float = 7.0,        # Karras grid exponent
    callback: SamplerCallback | None = None,
    condition: Any = None,                 # batch-first Condition, e.g. model.condition_for(seeds)
    steps: StepGrid | None = None,         # a searched σ grid (see sigma_grid)
) -> torch.Tensor:
    """Generate images (x at σ = 0, roughly in [-1, 1]) from ``noise`` with exactly ``nfe`` calls.

    A conditional model needs ``condition`` (row j for noise row j, see
    ``skiptune.models.Condition``); it is bound into the denoiser the sampler calls, so the
    samplers themselves stay ``(denoiser(x, sigma), x, sigmas)``.

    The noise is scaled by the top σ of the grid (σ_max for Karras grids) and moved to the
    model's device; the sampler runs under ``torch.no_grad()``. Raises ``ConfigurationError``
    for a budget the sampler cannot meet and ``NonFiniteSampleError`` if the result has NaN or
    infinite values.
    """
    spec = get_sampler(sampler)
    sigmas = sigma_grid(model, sampler=sampler, nfe=nfe, schedule_exponent=schedule_exponent,
                        steps=steps)
    condition = _bound_condition(condition, noise, model.device)

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        failpoint("sampling-step")
        if condition is None:
            return model.denoise(x, sigma)
        return model.denoise(x, sigma, condition)

    with torch.no_grad():
        x = noise.to(model.device) * sigmas[0].item()
        images = spec.fn(denoise, x, sigmas, callback=callback)
    if not bool(torch.isfinite(images).all()):
        raise NonFiniteSampleError(
            f"{spec.name} at {nfe} NFE produced NaN or infinite values; check the model and "
            "its skip factors (ρ far from 1 can make the network diverge)"
        )
    return images


def _bound_condition(condition: Any, noise: torch.Tensor, device: torch.device) -> Any:
    """``condition`` on ``device``, checked to hold one row per noise sample."""
    if condition is None:
        return None
    from skiptune.models import condition_size, condition_to

    if condition_size(condition) != noise.shape[0]:
        raise ConfigurationError(
            f"the condition holds {condition_size(condition)} rows but the noise "
            f"{noise.shape[0]} samples; pass one row per sample, e.g. "
            "model.condition_for(seeds) for the noise's seeds"
        )
    return condition_to(condition, device)
