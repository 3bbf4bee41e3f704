"""Stable Diffusion pipelines distilled to one to four steps: LCM, LCM-LoRA, SD-/SDXL-Turbo.

They are Stable Diffusion pipeline folders, loaded by :mod:`.diffusers_sd`; their scheduler
says how they sample, and so what skiptune samples them with by default:

- ``LCMScheduler``: a Latent Consistency Model (Luo et al. 2023), or LCM-LoRA fused into an SD
  U-Net. LCM's multistep sampling denoises to x̂₀ and re-noises it to the next of LCM's
  timesteps: the ``lcm`` sampler (consistency sampling on :func:`~skiptune.sampling.lcm_sigmas`).
  The denoiser carries LCM's boundary condition (the scheduler's
  ``get_scalings_for_boundary_condition_discrete``) over the ε/v → x̂₀ conversion, with
  τ = t·``timestep_scaling`` at the training timestep t of σ and σ_d = 0.5::

      D(x; σ) = c_skip·x/√(σ² + 1) + c_out·x̂₀,  c_skip = σ_d²/(τ² + σ_d²),  c_out = τ/√(τ² + σ_d²)

  An LCM-distilled U-Net (``time_cond_proj_dim`` in its config) takes the guidance scale g as
  an input, w = g − 1 embedded as ``timestep_cond`` (:func:`guidance_embedding`), and no
  classifier-free guidance; its default g is ``LatentConsistencyModelPipeline``'s 8.5. An
  LCM-LoRA U-Net has no such input and guides classifier-free as any SD pipeline; its default
  g is 1 (no guidance), as the LCM-LoRA model cards sample.
- ``EulerAncestralDiscreteScheduler`` with ``timestep_spacing`` ``"trailing"``: SD-Turbo and
  SDXL-Turbo (Sauer et al. 2023, adversarial diffusion distillation) as their model cards
  sample them: Euler ancestral on the trailing training timesteps (one step is timestep 999),
  the ``euler_ancestral_discrete`` sampler, with guidance 0. Nothing else in a turbo folder
  says "turbo": one saved with another scheduler samples as its card says with
  ``sampler="euler_ancestral_discrete"`` and the conditioning option ``guidance_scale`` 0.

Nothing here imports diffusers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from skiptune._checks import is_whole
from skiptune.errors import CheckpointError
from skiptune.sampling.sigmas import LCM_ORIGINAL_STEPS

__all__ = [
    "LCM_GUIDANCE",
    "LCM_LORA_GUIDANCE",
    "LCM_SCHEDULER",
    "TURBO_SCHEDULER",
    "LcmBoundary",
    "PipelineSampling",
    "distillation",
    "guidance_embedding",
    "pipeline_sampling",
]

LCM_SCHEDULER = "LCMScheduler"
TURBO_SCHEDULER = "EulerAncestralDiscreteScheduler"
LCM_GUIDANCE = 8.5          # LatentConsistencyModelPipeline's default guidance_scale
LCM_LORA_GUIDANCE = 1.0     # the LCM-LoRA cards' guidance_scale: classifier-free guidance off
_SIGMA_DATA = 0.5           # LCMScheduler's, fixed in get_scalings_for_boundary_condition_discrete


def distillation(scheduler_config: Mapping[str, Any]) -> str | None:
    """``"lcm"`` or ``"turbo"`` for a scheduler config that samples as LCM or SD-Turbo do,
    else None (an ordinary Stable Diffusion scheduler); never raises."""
    name = scheduler_config.get("_class_name")
    if name == LCM_SCHEDULER:
        return "lcm"
    if name == TURBO_SCHEDULER and scheduler_config.get("timestep_spacing") == "trailing":
        return "turbo"
    return None


@dataclass(frozen=True)
class LcmBoundary:
    """LCM's boundary condition: x̂₀ ↦ c_skip(t)·x_vp + c_out(t)·x̂₀ (see the module docstring).

    ``clip_range``: the scheduler's ``clip_sample_range`` where it sets ``clip_sample`` (x̂₀
    is clamped to ±range first, as the scheduler does), else None.
    """

    timestep_scaling: float = 10.0
    clip_range: float | None = None

    def __call__(self, x_vp: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """D from the net's input x_vp = x/√(σ² + 1), its timesteps t [batch] and its x̂₀."""
        tau = t * self.timestep_scaling
        c_skip = _SIGMA_DATA**2 / (tau * tau + _SIGMA_DATA**2)
        c_out = tau / (tau * tau + _SIGMA_DATA**2).sqrt()
        shape = (-1, *([1] * (x0.ndim - 1)))
        if self.clip_range is not None:
            x0 = x0.clamp(-self.clip_range, self.clip_range)
        return (c_out.to(x0.dtype).view(shape) * x0
                + c_skip.to(x0.dtype).view(shape) * x_vp.to(x0.dtype))


def guidance_embedding(guidance: torch.Tensor, dim: int) -> torch.Tensor:
    """The ``timestep_cond`` of an LCM-distilled U-Net for guidance scales g [batch]: the
    sinusoidal embedding (VDM's, as diffusers' ``get_guidance_scale_embedding``) of
    1000·(g − 1), sines then cosines, ``dim`` wide (zero-padded when odd); float32."""
    w = (guidance.to(torch.float32) - 1.0) * 1000.0
    half = dim // 2
    step = torch.log(torch.tensor(10000.0)) / (half - 1)
    frequencies = torch.exp(torch.arange(half, dtype=torch.float32) * -step).to(w.device)
    angles = w[:, None] * frequencies[None, :]
    embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return torch.nn.functional.pad(embedding, (0, dim % 2))


@dataclass(frozen=True)
class PipelineSampling:
    """How a Stable Diffusion pipeline samples, as its scheduler config says.

    Attributes:
        family: the model family: ``diffusers-lcm``, ``diffusers-turbo`` or ``diffusers-sd``.
        default_sampler: the sampler that samples as the pipeline does (``lcm``,
            ``euler_ancestral_discrete``); None: skiptune's default.
        default_guidance: the guidance scale when the user gives none; None: the SD
            generation's (see :mod:`skiptune.models._prompts`).
        original_inference_steps: an LCM's skipping schedule (``lcm`` steps among these).
        boundary: an LCM's boundary condition, applied to every x̂₀; None: none.
    """

    family: str = "diffusers-sd"
    default_sampler: str | None = None
    default_guidance: float | None = None
    original_inference_steps: int | None = None
    boundary: LcmBoundary | None = None


def pipeline_sampling(
    path: Path, config: Mapping[str, Any], *, num_train: int, embeds_guidance: bool
) -> PipelineSampling:
    """How the pipeline whose scheduler config (read from ``path``) is ``config`` samples.

    Args:
        path: where the config was read, for messages.
        config: the scheduler config.
        num_train: its training timesteps (the σ table's length).
        embeds_guidance: whether the U-Net takes the guidance scale as an input
            (``time_cond_proj_dim``): an LCM-distilled U-Net.

    Raises:
        CheckpointError: an ``LCMScheduler`` config whose ``original_inference_steps``,
            ``timestep_scaling``, ``clip_sample``/``clip_sample_range`` or ``thresholding``
            LCM cannot sample with, in one line naming the file, the key and the fix.
    """
    kind = distillation(config)
    if kind == "lcm":
        return PipelineSampling(
            family="diffusers-lcm",
            default_sampler="lcm",
            default_guidance=LCM_GUIDANCE if embeds_guidance else LCM_LORA_GUIDANCE,
            original_inference_steps=_original_steps(path, config, num_train),
            boundary=_boundary(path, config),
        )
    if kind == "turbo":
        return PipelineSampling(family="diffusers-turbo",
                                default_sampler="euler_ancestral_discrete", default_guidance=0.0)
    return PipelineSampling()


def _bad(path: Path, key: str, value: Any, expected: str) -> CheckpointError:
    return CheckpointError(
        f"{path} has {key} {repr(value)[:40]}, expected {expected}; fix it or save the "
        f"{LCM_SCHEDULER} again with save_pretrained"
    )


def _original_steps(path: Path, config: Mapping[str, Any], num_train: int) -> int:
    value = config.get("original_inference_steps", LCM_ORIGINAL_STEPS)
    if not (is_whole(value) and isinstance(value, int)) or not 1 <= value <= num_train:
        raise _bad(path, "original_inference_steps", value,
                   f"a whole number from 1 to its {num_train} training timesteps (LCMs: "
                   f"{LCM_ORIGINAL_STEPS})")
    return value


def _positive(path: Path, config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise _bad(path, key, value, "a finite number > 0")
    return float(value)


def _boundary(path: Path, config: Mapping[str, Any]) -> LcmBoundary:
    for key in ("clip_sample", "thresholding"):
        if not isinstance(config.get(key, False), bool):
            raise _bad(path, key, config[key], "true or false")
    if config.get("thresholding", False):
        raise CheckpointError(
            f"{path} sets thresholding, which {LCM_SCHEDULER}'s documentation calls unsuitable "
            "for latent models and skiptune does not apply; set it to false"
        )
    scaling = _positive(path, config, "timestep_scaling", 10.0)
    clip = _positive(path, config, "clip_sample_range", 1.0) if config.get("clip_sample") else None
    return LcmBoundary(timestep_scaling=scaling, clip_range=clip)
