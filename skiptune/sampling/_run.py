"""Sample a model: the one call the rest of skiptune uses to turn noise into images."""

from __future__ import annotations

from typing import Any, Protocol, cast

import torch

from skiptune._failpoints import failpoint
from skiptune.errors import ConfigurationError, NonFiniteSampleError
from skiptune.sampling.sigmas import (
    LCM_ORIGINAL_STEPS,
    ddim_sigmas,
    grid_sigmas,
    karras_sigmas,
    lcm_sigmas,
)
from skiptune.sampling.solvers import (
    SAMPLERS,
    TIMESTEP_GRIDS,
    Sampler,
    SamplerCallback,
    StepNoise,
    StochasticSampler,
    get_sampler,
)
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

    Karras samplers get EDM's grid over [model.sigma_min, model.sigma_max]; ``ddim`` and
    ``euler_ancestral_discrete`` get the model's discrete training σ (trailing spacing);
    ``lcm`` gets the timesteps a Latent Consistency Model samples (``lcm_sigmas``, among the
    model's ``original_inference_steps``, else LCM's 50); ``consistency`` gets EDM's grid of
    one level more, ending at σ_min instead of 0 (the consistency model's boundary: n steps
    denoise at the n levels above it). A ``steps`` grid replaces a Karras or consistency grid
    (its exponent and ends; they must lie in the model's σ range); the timestep grids take
    none. Float32, on the model's device.
    """
    spec = get_sampler(sampler)
    count = spec.steps_for_nfe(nfe)
    if spec.grid in TIMESTEP_GRIDS:
        table = _training_sigmas(model, spec.name, steps)
        if spec.grid == "lcm":
            # Not part of SamplingModel: a model that does not say is sampled as LCM's default.
            original = getattr(model, "original_inference_steps", None) or LCM_ORIGINAL_STEPS
            return lcm_sigmas(count, table, original_steps=original, device=model.device)
        return ddim_sigmas(count, table, device=model.device)
    if spec.grid == "consistency":
        # Karras levels σ_max … σ_min (count + 1 of them), without the trailing 0.
        return _karras_or_searched(model, count + 1, schedule_exponent, steps)[:-1]
    return _karras_or_searched(model, count, schedule_exponent, steps)


def _training_sigmas(model: SamplingModel, name: str, steps: StepGrid | None) -> torch.Tensor:
    """The model's training σ table, for a sampler that walks its timesteps (no step grid)."""
    if steps is not None:
        raise ConfigurationError(
            f"{name} walks the model's training timesteps and takes no step grid; "
            "drop the grid or choose a sampler such as heun"
        )
    if model.discrete_sigmas is None:
        others = ", ".join(n for n, s in SAMPLERS.items() if s.grid not in TIMESTEP_GRIDS)
        raise ConfigurationError(
            f"{name} walks a discrete-time model's training timesteps, but this model "
            f"has none (discrete_sigmas is None); choose one of {others}"
        )
    return model.discrete_sigmas


def _karras_or_searched(
    model: SamplingModel, count: int, schedule_exponent: float, steps: StepGrid | None
) -> torch.Tensor:
    """EDM's grid of ``count`` levels then 0, over the model's σ range or a searched grid's."""
    if steps is not None:
        steps.check_inside((model.sigma_min, model.sigma_max))
        return grid_sigmas(count, steps, device=model.device)
    return karras_sigmas(count, sigma_min=model.sigma_min, sigma_max=model.sigma_max,
                         schedule_exponent=schedule_exponent, device=model.device)


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
    step_noise: StepNoise | None = None,   # a stochastic sampler's noise, e.g. SeededStepNoise
) -> torch.Tensor:
    """Generate images (x at σ = 0, roughly in [-1, 1]) from ``noise`` with exactly ``nfe`` calls.

    A stochastic sampler (``SAMPLERS[name].stochastic``) needs ``step_noise``: row j of
    ``step_noise(i)`` is what step i adds to sample j, drawn (by ``SeededStepNoise``) from
    the same seed as noise row j. Deterministic samplers ignore it.

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
        if spec.stochastic:
            stochastic = cast(StochasticSampler, spec.fn)
            images = stochastic(denoise, x, sigmas, callback=callback,
                                noise=_step_noise_like(spec.name, step_noise, x))
        else:
            images = cast(Sampler, spec.fn)(denoise, x, sigmas, callback=callback)
    if not bool(torch.isfinite(images).all()):
        raise NonFiniteSampleError(
            f"{spec.name} at {nfe} NFE produced NaN or infinite values; check the model and "
            "its skip factors (ρ far from 1 can make the network diverge)"
        )
    return images


def _step_noise_like(name: str, step_noise: StepNoise | None, x: torch.Tensor) -> StepNoise:
    """``step_noise`` checked for shape and moved to x's device and dtype at each step."""
    if step_noise is None:
        raise ConfigurationError(
            f"{name} is a stochastic sampler: pass step_noise, e.g. SeededStepNoise(count, "
            "image_shape, seed=seed) for the seeds of the initial noise"
        )
    source = step_noise

    def noise(step: int) -> torch.Tensor:
        drawn = source(step)
        if tuple(drawn.shape) != tuple(x.shape):
            raise ConfigurationError(
                f"step noise of shape {tuple(drawn.shape)} for samples of shape "
                f"{tuple(x.shape)}; draw it for the same samples as the initial noise"
            )
        return drawn.to(device=x.device, dtype=x.dtype)

    return noise


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
