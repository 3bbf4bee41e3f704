"""Images of fixed-seed samples, batch by batch: what every measurement of a model draws."""

from __future__ import annotations

import torch

from skiptune.models import TunableModel
from skiptune.sampling import SeededStepNoise, initial_noise, sample
from skiptune.steps import StepGrid

__all__ = ["sampled_images"]


def sampled_images(
    model: TunableModel,
    *,
    sampler: str,                          # a name in SAMPLERS
    nfe: int,                              # exact denoiser evaluations per sample
    schedule_exponent: float,              # Karras grid exponent (never the skip factor ρ)
    seed: int,                             # sample j is drawn from seed + j
    start: int,                            # global index of this batch's first sample
    count: int,                            # samples in this batch
    steps: StepGrid | None = None,         # a searched σ grid; None: the sampler's own
) -> torch.Tensor:
    """Images [count, C, H, W] in [-1, 1] of samples ``start`` … ``start + count − 1``.

    Under whatever skip schedule the caller installed (none: the model at ρ = 1). A latent
    model's VAE decodes here, in the batch; a conditional model gets the conditions its
    seeds draw, so the same seeds give the same images whatever the batch split.
    """
    noise = initial_noise(count, model.noise_shape, seed=seed, start=start)
    first = seed + start
    # The whole-dataset reference is compared against whatever conditions the seeds draw
    # (EDM's FID protocol for class-conditional models): nothing here is class-specific.
    condition = model.condition_for(range(first, first + count))
    images = sample(model, noise, sampler=sampler, nfe=nfe,
                    schedule_exponent=schedule_exponent, condition=condition, steps=steps,
                    step_noise=SeededStepNoise(count, model.noise_shape, seed=seed, start=start))
    return model.to_images(images)
