"""σ-space ODE samplers with exact NFE, their σ grids, seeded noise and the ``sample`` call.

``sample_images`` samples a model under a skip schedule; ``write_samples`` loads a model,
applies a schedule (given, or from an export) and writes a PNG grid or ``.npz``.
"""

from __future__ import annotations

from skiptune.sampling._images import sample_images, save_images, write_samples
from skiptune.sampling._run import SamplingModel, sample, sigma_grid
from skiptune.sampling.noise import MAX_SEED, initial_noise
from skiptune.sampling.sigmas import ddim_sigmas, grid_sigmas, karras_sigmas
from skiptune.sampling.solvers import (
    SAMPLERS,
    Denoiser,
    Sampler,
    SamplerCallback,
    SamplerSpec,
    ddim,
    dpmpp_2m,
    euler,
    get_sampler,
    heun,
    ipndm,
    nfe_for_steps,
    steps_for_nfe,
    unipc,
)

__all__ = [
    "MAX_SEED",
    "SAMPLERS",
    "Denoiser",
    "Sampler",
    "SamplerCallback",
    "SamplerSpec",
    "SamplingModel",
    "ddim",
    "ddim_sigmas",
    "dpmpp_2m",
    "euler",
    "get_sampler",
    "grid_sigmas",
    "heun",
    "initial_noise",
    "ipndm",
    "karras_sigmas",
    "nfe_for_steps",
    "sample",
    "sample_images",
    "save_images",
    "sigma_grid",
    "steps_for_nfe",
    "unipc",
    "write_samples",
]
