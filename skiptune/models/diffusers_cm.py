"""Wrap a diffusers ``ConsistencyModelPipeline`` folder (Song et al. 2023) as a σ-space denoiser.

The folder holds ``model_index.json`` naming ``ConsistencyModelPipeline``, ``unet/`` (a
``UNet2DModel``) and ``scheduler/`` (a ``CMStochasticIterativeScheduler`` config). A
consistency model is already a denoiser in EDM's σ-space (x = y + σ·n), with a boundary
condition at σ_min (Song et al. 2023, App. C; diffusers' ``get_scalings_for_boundary_condition``):

    f(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, t(σ))
    c_skip = σ_d² / ((σ − σ_min)² + σ_d²),  c_out = (σ − σ_min)·σ_d / √(σ² + σ_d²),
    c_in = 1 / √(σ² + σ_d²),  t(σ) = 1000·0.25·log(σ + 1e-44)  (the scheduler's ``sigma_to_t``)

with σ_min, σ_data from the scheduler config. One step is f(σ_max·z; σ_max). Where the
scheduler config says ``clip_denoised`` (its default), diffusers clamps each x̂₀ to [-1, 1]
before re-noising it, and so does the denoiser here. The skip sites and FreeU stages are
those of any ``UNet2DModel`` (:func:`skiptune.models.diffusers_unet.unet_sites`).
Class-conditional models (ImageNet-64, ``num_class_embeds``) draw each sample's class from
its seed, as EDM's conditional models do.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from skiptune.errors import CheckpointError, ConfigurationError
from skiptune.models._base import TunableModel, fingerprint_state_dict
from skiptune.models._class_labels import ClassLabels
from skiptune.models._diffusers_common import (
    config_sample_shape,
    read_json,
    scheduler_config_path,
)
from skiptune.models.diffusers_unet import (
    import_diffusers,
    is_diffusers_folder,
    read_unet,
    unet_sites,
)

__all__ = ["PIPELINE_CLASS", "SCHEDULER_CLASS", "is_consistency_pipeline", "load"]

PIPELINE_CLASS = "ConsistencyModelPipeline"
SCHEDULER_CLASS = "CMStochasticIterativeScheduler"

# CMStochasticIterativeScheduler's defaults, for configs that omit a key (as diffusers reads them).
_SCHEDULER_DEFAULTS = {"sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5}


def is_consistency_pipeline(path: str | Path) -> bool:
    """Whether ``path`` is a folder whose ``model_index.json`` names ``ConsistencyModelPipeline``.

    Reads that file only, so it works without diffusers installed.
    """
    try:
        data = json.loads((Path(path) / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("_class_name") == PIPELINE_CLASS


def load(
    path: str | Path, *, device: torch.device | str = "cpu", variant: str | None = None
) -> TunableModel:
    """Load a ``ConsistencyModelPipeline`` folder, offline, as the consistency function f(x; σ).

    Args:
        path: the folder ``ConsistencyModelPipeline.save_pretrained`` wrote (or a snapshot of
            a hub repository such as ``openai/diffusers-cd_imagenet64_l2``).
        device: where to put the net.
        variant: the weights variant to read (``fp16``: ``*.fp16.safetensors``); None: the
            plain weights.

    Returns:
        A :class:`TunableModel` with family ``"diffusers-cm"``: images in [-1, 1],
        ``sigma_min``/``sigma_max``/``sigma_data`` from the scheduler config (no discrete σ
        table), ``default_sampler`` ``"consistency"``, one skip site per tensor the encoder
        hands to the decoder (bottom → top), and for a class-conditional net a conditioner
        drawing one class per seed (one-hot labels, see :class:`ClassLabels`).

    Raises:
        CheckpointError: diffusers is not installed; ``unet/`` or the scheduler config is
            missing, unreadable or of another kind; its σ are not finite positive numbers
            with σ_min < σ_max; or the U-Net is of a kind a consistency pipeline cannot run.
    """
    folder = Path(path).expanduser()
    unet_dir = folder / "unet"
    if not is_consistency_pipeline(folder) or not is_diffusers_folder(unet_dir):
        raise CheckpointError(
            f"{str(folder)!r} is no {PIPELINE_CLASS} folder with a UNet2DModel in unet/; save "
            "the whole pipeline with pipe.save_pretrained(folder)"
        )
    diffusers = import_diffusers(folder, f"a diffusers {PIPELINE_CLASS} folder")
    scheduler_path = scheduler_config_path(unet_dir)
    scheduler = _scheduler_values(scheduler_path, read_json(scheduler_path))
    net = read_unet(unet_dir, variant=variant)
    num_classes = _check_supported(unet_dir, net.config)
    skip_sites, freeu_stages = unet_sites(unet_dir, net)
    net.to(device).eval()
    return TunableModel(
        net=net,
        denoise_fn=_ConsistencyDenoiser(
            net, sigma_min=scheduler["sigma_min"], sigma_data=scheduler["sigma_data"],
            num_classes=num_classes, clip_denoised=scheduler["clip_denoised"],
        ),
        skip_sites=skip_sites,
        image_shape=config_sample_shape(unet_dir, net.config),
        sigma_min=scheduler["sigma_min"],
        sigma_max=scheduler["sigma_max"],
        sigma_data=scheduler["sigma_data"],
        fingerprint=fingerprint_state_dict(net.state_dict()),
        family="diffusers-cm",
        metadata={
            "diffusers_version": diffusers.__version__,
            "scheduler": SCHEDULER_CLASS,
            "clip_denoised": scheduler["clip_denoised"],
            "num_classes": num_classes,
        },
        source=str(folder),
        conditioner=ClassLabels(num_classes) if num_classes else None,
        freeu_stages=freeu_stages,
        default_sampler="consistency",
    )


class _ConsistencyDenoiser:
    """f(x; σ) of a consistency ``UNet2DModel`` (see the module docstring)."""

    # Feeds the net in its own dtype and returns the caller's (see models/_precision.py).
    casts_to_net_dtype = True

    def __init__(self, net: Any, *, sigma_min: float, sigma_data: float,
                 num_classes: int, clip_denoised: bool) -> None:
        self.net = net                 # a diffusers UNet2DModel (no type information)
        self.clip_denoised = clip_denoised
        self.sigma_min = sigma_min
        self.sigma_data = sigma_data
        self.num_classes = num_classes

    def __call__(
        self, x: torch.Tensor, sigma: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        labels = self._labels(condition)
        s = sigma.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.ndim - 1)))
        d = self.sigma_data
        c_skip = d * d / ((s - self.sigma_min) ** 2 + d * d)
        c_out = (s - self.sigma_min) * d / (s * s + d * d).sqrt()
        # The scheduler's sigma_to_t, in float64 as diffusers computes it (MPS has none).
        wide = torch.float32 if x.device.type == "mps" else torch.float64
        t = 250.0 * (sigma.to(device=x.device, dtype=wide) + 1e-44).log()
        net_dtype = next(self.net.parameters()).dtype
        scaled = x / (s * s + d * d).sqrt()            # c_in·x, as scale_model_input divides
        output = self.net(scaled.to(net_dtype), t, class_labels=labels, return_dict=False)[0]
        denoised = c_skip * x + c_out * output.to(x.dtype)
        # The scheduler clamps x̂₀ before it re-noises (clip_denoised): so does f here.
        return denoised.clamp(-1, 1) if self.clip_denoised else denoised

    def _labels(self, condition: torch.Tensor | None) -> torch.Tensor | None:
        """The class indices the net's embedding takes, from one-hot labels [batch, classes]."""
        if self.num_classes and condition is None:
            raise ConfigurationError(
                f"this consistency model is class-conditional ({self.num_classes} classes): "
                "pass condition=model.condition_for(seeds) (one-hot labels, one row per sample)"
            )
        if not self.num_classes and condition is not None:
            raise ConfigurationError(
                "this consistency model is unconditional: it takes no condition"
            )
        return None if condition is None else condition.argmax(dim=1)


def _scheduler_values(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """σ_min, σ_max, σ_data and clip_denoised of a CMStochasticIterativeScheduler config."""
    name = config.get("_class_name")
    if name != SCHEDULER_CLASS:
        raise CheckpointError(
            f"{path} names scheduler {str(name)[:60]!r}, not {SCHEDULER_CLASS}, which a "
            f"{PIPELINE_CLASS} samples with; save the pipeline's own scheduler there"
        )
    values: dict[str, Any] = {}
    for key, default in _SCHEDULER_DEFAULTS.items():
        value = config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value <= 0:
            raise CheckpointError(
                f"{path} has {key} {repr(value)[:40]}, expected a finite number > 0; fix it or "
                "save the scheduler again with save_pretrained"
            )
        values[key] = float(value)
    if values["sigma_min"] >= values["sigma_max"]:
        raise CheckpointError(
            f"{path} has sigma_min {values['sigma_min']} ≥ sigma_max {values['sigma_max']}; a "
            "consistency model's σ range needs sigma_min < sigma_max"
        )
    clip = config.get("clip_denoised", True)
    if not isinstance(clip, bool):
        raise CheckpointError(
            f"{path} has clip_denoised {repr(clip)[:40]}, expected true or false"
        )
    values["clip_denoised"] = clip
    return values


def _check_supported(unet_dir: Path, config: Any) -> int:
    """The number of classes of a class-conditional net (0: unconditional); CheckpointError
    for a U-Net the consistency pipeline cannot run as skiptune calls it."""
    where = str(unet_dir)
    if config.time_embedding_type != "positional":
        raise CheckpointError(
            f"the UNet2DModel in {where!r} has a {config.time_embedding_type} time embedding; a "
            "consistency model takes the continuous timestep 250·log σ through a positional one"
        )
    if config.in_channels != config.out_channels:
        raise CheckpointError(
            f"the UNet2DModel in {where!r} takes {config.in_channels} channels but returns "
            f"{config.out_channels}; a consistency model returns an image of its input's shape"
        )
    if config.class_embed_type is not None:
        raise CheckpointError(
            f"the UNet2DModel in {where!r} has class_embed_type {config.class_embed_type!r}; "
            "skiptune supports consistency models with num_class_embeds (a class table) or none"
        )
    return int(config.num_class_embeds or 0)
