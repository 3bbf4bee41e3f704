"""σ-space samplers with exact NFE (ODE and stochastic), their σ grids, seeded noise and the
``sample`` call.

``sample_images`` samples a model under a skip schedule; ``write_samples`` loads a model,
applies a schedule (given, or from an export) and writes a PNG grid or ``.npz``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skiptune._lazy import lazy_exports

# Each name is imported from its module on first use (PEP 562): the samplers' NFE rules and
# the largest seed are checked, as a stored study's config is read, without importing torch.
_EXPORTS = {
    "skiptune._checks": ("MAX_SEED",),
    "skiptune.sampling._images": ("sample_images", "save_images", "write_samples"),
    "skiptune.sampling._run": ("sample", "SamplingModel", "sigma_grid"),
    "skiptune.sampling.noise": ("initial_noise", "SeededStepNoise"),
    "skiptune.sampling.sigmas": ("ddim_sigmas", "grid_sigmas", "karras_sigmas", "lcm_sigmas"),
    "skiptune.sampling.solvers": (
        "consistency", "ddim", "Denoiser", "dpmpp_2m", "dpmpp_2m_sde", "edm_stochastic",
        "euler", "euler_ancestral", "get_sampler", "heun", "ipndm", "nfe_for_steps", "Sampler",
        "SamplerCallback", "SamplerSpec", "SAMPLERS", "StepNoise", "StochasticSampler",
        "steps_for_nfe", "unipc",
    ),
}

if TYPE_CHECKING:
    from skiptune._checks import MAX_SEED
    from skiptune.sampling._images import sample_images, save_images, write_samples
    from skiptune.sampling._run import SamplingModel, sample, sigma_grid
    from skiptune.sampling.noise import SeededStepNoise, initial_noise
    from skiptune.sampling.sigmas import ddim_sigmas, grid_sigmas, karras_sigmas, lcm_sigmas
    from skiptune.sampling.solvers import (
        SAMPLERS,
        Denoiser,
        Sampler,
        SamplerCallback,
        SamplerSpec,
        StepNoise,
        StochasticSampler,
        consistency,
        ddim,
        dpmpp_2m,
        dpmpp_2m_sde,
        edm_stochastic,
        euler,
        euler_ancestral,
        get_sampler,
        heun,
        ipndm,
        nfe_for_steps,
        steps_for_nfe,
        unipc,
    )

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "MAX_SEED",
    "SAMPLERS",
    "Denoiser",
    "Sampler",
    "SamplerCallback",
    "SamplerSpec",
    "SamplingModel",
    "SeededStepNoise",
    "StepNoise",
    "StochasticSampler",
    "consistency",
    "ddim",
    "ddim_sigmas",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "edm_stochastic",
    "euler",
    "euler_ancestral",
    "get_sampler",
    "grid_sigmas",
    "heun",
    "initial_noise",
    "ipndm",
    "karras_sigmas",
    "lcm_sigmas",
    "nfe_for_steps",
    "sample",
    "sample_images",
    "save_images",
    "sigma_grid",
    "steps_for_nfe",
    "unipc",
    "write_samples",
]
