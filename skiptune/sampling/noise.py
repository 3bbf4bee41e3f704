"""Seeded noise: common random numbers across trials, batch splits and devices.

Sample j of a batch owns seed + start + j. Its initial noise comes from that seed, and the
noise a stochastic sampler adds at step i from a stream derived from (that seed, i) alone.
So a batch of 64 equals 64 batches of one, and two schedules sampled on the same seeds see
the same noise at every step: a search's trials stay paired.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from skiptune._checks import MAX_SEED, is_whole
from skiptune.errors import ConfigurationError

__all__ = ["MAX_SEED", "SeededStepNoise", "initial_noise", "step_noise", "step_seed"]

_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    """One round of SplitMix64 (Steele et al. 2014): a 64-bit bijection that scatters bits."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def step_seed(sample_seed: int, step: int) -> int:
    """The generator seed of one sample's noise at one sampler step, in [0, 2**63).

    Mixed from both numbers, so it collides neither with the initial noise's seeds nor
    with another (sample, step) in any practical run.
    """
    return _splitmix64(_splitmix64(sample_seed) ^ (step + 1)) >> 1


def _check_batch(num_samples: int, image_shape: Sequence[int], seed: int, start: int) -> None:
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


def _gaussian(seeds: Iterable[int], count: int, shape: tuple[int, ...]) -> torch.Tensor:
    """[count, *shape] float32 on the CPU, row j drawn from its own generator seeded seeds[j]."""
    noise = torch.empty((count, *shape), dtype=torch.float32)
    generator = torch.Generator(device="cpu")
    for j, seed in enumerate(seeds):
        generator.manual_seed(seed)
        torch.randn(shape, generator=generator, out=noise[j])
    return noise


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
    _check_batch(num_samples, image_shape, seed, start)
    first = seed + start
    noise = _gaussian(range(first, first + num_samples), num_samples, tuple(image_shape))
    return noise.to(device=device, dtype=dtype)


def step_noise(
    num_samples: int,
    image_shape: Sequence[int],
    *,
    seed: int,                             # seed of global sample 0
    step: int,                             # the sampler's step index (≥ 0)
    start: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The unit Gaussian noise a stochastic sampler adds at ``step``, [num_samples, *shape].

    Sample j's comes from ``step_seed(seed + start + j, step)``, drawn as ``initial_noise``
    draws: independent of the batch split, the device and the dtype.
    """
    _check_batch(num_samples, image_shape, seed, start)
    if not is_whole(step) or step < 0:
        raise ConfigurationError(f"step must be a whole number ≥ 0, got {step!r}")
    first = seed + start
    seeds = (step_seed(first + j, step) for j in range(num_samples))
    return _gaussian(seeds, num_samples, tuple(image_shape)).to(device=device, dtype=dtype)


@dataclass(frozen=True)
class SeededStepNoise:
    """A batch's step noise (``StepNoise``): ``noise(i)`` is what step i adds, per sample seed.

    ``copies`` > 1 stands for a batch that repeats the same samples that many times (several
    schedules measured at once on the same seeds), each copy with the same noise.
    """

    num_samples: int
    image_shape: tuple[int, ...]
    seed: int
    start: int = 0
    copies: int = 1

    def __call__(self, step: int) -> torch.Tensor:
        noise = step_noise(self.num_samples, self.image_shape, seed=self.seed, step=step,
                           start=self.start)
        return noise.repeat(self.copies, *([1] * len(self.image_shape)))
