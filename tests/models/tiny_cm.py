"""Tiny random diffusers consistency pipelines (``ConsistencyModelPipeline``), built for the tests.

Shaped like OpenAI's consistency models in diffusers (``openai/diffusers-cd_imagenet64_l2``):
resnet down- and upsamplers and scale-shift time conditioning, at two levels of 16 channels.
diffusers is imported when a pipeline is built, so importing this module needs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

CM_UNET: dict[str, Any] = {
    "sample_size": 16,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (16, 32),
    "layers_per_block": 1,
    "down_block_types": ("ResnetDownsampleBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "ResnetUpsampleBlock2D"),
    "norm_num_groups": 8,
    "attention_head_dim": 8,
    "resnet_time_scale_shift": "scale_shift",
    "downsample_type": "resnet",
    "upsample_type": "resnet",
}
SIGMA_MAX = 60.0          # not the scheduler's default 80: a loader must read it


def save_cm_pipeline(folder: Path, *, num_classes: int | None = None, seed: int = 0) -> Any:
    """A random consistency pipeline saved to ``folder`` with ``save_pretrained``; returns the
    pipeline itself (its progress bar off), the reference for what it samples."""
    import diffusers

    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(**CM_UNET, num_class_embeds=num_classes)
    with torch.no_grad():       # off diffusers' initialisation, so every layer matters
        for parameter in unet.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    scheduler = diffusers.CMStochasticIterativeScheduler(sigma_max=SIGMA_MAX)
    pipeline = diffusers.ConsistencyModelPipeline(unet=unet, scheduler=scheduler)
    pipeline.set_progress_bar_config(disable=True)
    pipeline.save_pretrained(folder)
    return pipeline
