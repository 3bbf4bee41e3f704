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
    prediction_type: str = "epsilon", scheduler: Any = None, pipeline: str | None = None,
) -> Path:
    """unet/, vae/, scheduler/ with save_pretrained, and the model_index.json a pipeline writes.

    ``scheduler``: a diffusers scheduler to save (default SD's DDPM schedule with
    ``prediction_type``); ``pipeline``: the pipeline class model_index.json names (default
    StableDiffusionPipeline, or StableDiffusionXLPipeline for an SDXL U-Net)."""
    import diffusers

    torch.manual_seed(seed)
    diffusers.UNet2DConditionModel(**unet).save_pretrained(root / "unet")
    components: dict[str, Any] = {"unet": ["diffusers", "UNet2DConditionModel"]}
    if vae:
        diffusers.AutoencoderKL(**VAE).save_pretrained(root / "vae")
        components["vae"] = ["diffusers", "AutoencoderKL"]
    if scheduler is None:
        scheduler = diffusers.DDPMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
            prediction_type=prediction_type,
        )
    scheduler.save_pretrained(root / "scheduler")
    components["scheduler"] = ["diffusers", type(scheduler).__name__]
    xl = "addition_embed_type" in unet
    name = pipeline or ("StableDiffusionXLPipeline" if xl else "StableDiffusionPipeline")
    index = {"_class_name": name, "_diffusers_version": diffusers.__version__, **components}
    if xl:
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


# --- tiny CLIP text encoders (transformers), written from a config and a vocabulary ---------

TEXT_LENGTH = 16          # the tokenizer's model_max_length: every prompt is padded to it
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_MERGES = ("c a", "ca t</w>", "d o", "do g</w>", "r e", "re d</w>")


def write_clip_vocabulary(folder: Path) -> Path:
    """vocab.json and merges.txt of a tiny CLIP BPE: the letters (inside and ending a word),
    a few merged words ("cat", "dog", "red") and CLIP's two special tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    tokens = [*_LETTERS, *(f"{c}</w>" for c in _LETTERS)]
    tokens += [merge.replace(" ", "") for merge in _MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n")
    return folder


def save_text_encoder(
    root: Path, *, hidden: int, projection: int | None = None, suffix: str = "", seed: int = 3,
    model_max_length: int | None = TEXT_LENGTH,
) -> None:
    """``tokenizer{suffix}/`` and ``text_encoder{suffix}/`` as a pipeline folder holds them:
    a CLIPTextModel, or with ``projection`` a CLIPTextModelWithProjection (SDXL's second).
    ``model_max_length`` None: a tokenizer that states no length (transformers writes ~1e30)."""
    import transformers

    vocabulary = write_clip_vocabulary(root / f"tokenizer{suffix}")
    length = {} if model_max_length is None else {"model_max_length": model_max_length}
    tokenizer = transformers.CLIPTokenizer(
        str(vocabulary / "vocab.json"), str(vocabulary / "merges.txt"), **length,
    )
    tokenizer.save_pretrained(root / f"tokenizer{suffix}")
    end = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = transformers.CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=TEXT_LENGTH,
        projection_dim=projection or hidden, bos_token_id=end - 1, eos_token_id=end,
        pad_token_id=end,
    )
    torch.manual_seed(seed)
    cls = transformers.CLIPTextModel if projection is None else (
        transformers.CLIPTextModelWithProjection
    )
    cls(config).eval().save_pretrained(root / f"text_encoder{suffix}")


def add_text_encoders(root: Path, *, model_max_length: int | None = TEXT_LENGTH) -> Path:
    """Give a tiny pipeline folder its text encoder(s) and tokenizer(s), listed in
    model_index.json: one CLIPTextModel for SD, two (the second with projection) for SDXL;
    ``model_max_length`` is every tokenizer's (see :func:`save_text_encoder`)."""
    index = json.loads((root / "model_index.json").read_text())
    if index["_class_name"] == "StableDiffusionXLPipeline":
        half = SDXL_UNET["cross_attention_dim"] // 2
        save_text_encoder(root, hidden=half, model_max_length=model_max_length)
        save_text_encoder(root, hidden=half, projection=POOLED, suffix="_2", seed=4,
                          model_max_length=model_max_length)
        parts = {"text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                 "tokenizer_2": ["transformers", "CLIPTokenizer"]}
    else:
        save_text_encoder(root, hidden=SD_UNET["cross_attention_dim"],
                          model_max_length=model_max_length)
        parts = {}
    index.update({"text_encoder": ["transformers", "CLIPTextModel"],
                  "tokenizer": ["transformers", "CLIPTokenizer"], **parts})
    (root / "model_index.json").write_text(json.dumps(index))
    return root
