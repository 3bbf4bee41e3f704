"""Tiny random Stable-Diffusion folders and prompt embeddings, built for the tests.

The pipeline folders are the components' own ``save_pretrained`` output plus a
``model_index.json`` written here: ``StableDiffusionPipeline.save_pretrained`` itself needs
``transformers`` (its text encoder), which these tests must not require.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

CROSS = 12
SD_UNET: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": (8, 16, 16),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": CROSS,
    "attention_head_dim": 4,
    "norm_num_groups": 4,
}
POOLED, TIME_DIM = 8, 4
SDXL_UNET: dict[str, Any] = {
    **SD_UNET,
    "cross_attention_dim": 16,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": TIME_DIM,
    "projection_class_embeddings_input_dim": 6 * TIME_DIM + POOLED,
}
VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
    "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
    "block_out_channels": (8, 16),
    "latent_channels": 4,
    "norm_num_groups": 4,
    "sample_size": 16,
}


def save_pipeline(
    root: Path, unet: dict[str, Any] = SD_UNET, *, vae: bool = True, seed: int = 0,
    prediction_type: str = "epsilon",
) -> Path:
    """unet/, vae/, scheduler/ with save_pretrained, and the model_index.json a pipeline writes."""
    import diffusers

    torch.manual_seed(seed)
    diffusers.UNet2DConditionModel(**unet).save_pretrained(root / "unet")
    components: dict[str, Any] = {"unet": ["diffusers", "UNet2DConditionModel"]}
    if vae:
        diffusers.AutoencoderKL(**VAE).save_pretrained(root / "vae")
        components["vae"] = ["diffusers", "AutoencoderKL"]
    diffusers.DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
        prediction_type=prediction_type,
    ).save_pretrained(root / "scheduler")
    components["scheduler"] = ["diffusers", "DDPMScheduler"]
    xl = "addition_embed_type" in unet
    name = "StableDiffusionXLPipeline" if xl else "StableDiffusionPipeline"
    index = {"_class_name": name, "_diffusers_version": diffusers.__version__, **components}
    if name == "StableDiffusionXLPipeline":
        index["force_zeros_for_empty_prompt"] = True
    (root / "model_index.json").write_text(json.dumps(index))
    return root


def save_embeddings(
    path: Path, *, count: int = 3, width: int = CROSS, length: int = 5,
    pooled: int | None = None, negative: bool = True, seed: int = 1,
) -> Path:
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {"prompt_embeds": torch.randn(count, length, width, generator=generator)}
    if negative:
        tensors["negative_prompt_embeds"] = torch.randn(1, length, width, generator=generator)
    if pooled is not None:
        tensors["pooled_prompt_embeds"] = torch.randn(count, pooled, generator=generator)
        if negative:
            tensors["negative_pooled_prompt_embeds"] = torch.randn(1, pooled, generator=generator)
    save_file(tensors, str(path))
    return path
