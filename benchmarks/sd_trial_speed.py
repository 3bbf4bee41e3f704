"""Seconds per search trial on a full-size Stable Diffusion 1.5 U-Net (random weights).

    python benchmarks/sd_trial_speed.py [--n 64] [--nfe 25] [--sampler euler]
        [--batch-size 16] [--guidance-scale 7.5] [--dtype float32] [--device cuda]
        [--no-vae] [--threads 0] [--json out.json]

(with skiptune installed, ``pip install -e .``; from a bare checkout prefix ``PYTHONPATH=.``)

Speed does not depend on the weights, so the U-Net (SD 1.5's config: 320/640/1280/1280
channels, 2 layers per block, cross-attention to 77×768 embeddings, 64×64 latents, i.e.
512×512 images) and SD's VAE are randomly initialised, saved as a pipeline folder with
``save_pretrained`` in a temporary directory and loaded through skiptune's own loader, as a
user's pipeline would be. One trial is what the objective does per schedule: --n samples
under a ρ + FreeU schedule at exactly --nfe denoiser calls each (classifier-free guidance
doubles every U-Net batch), then VAE decoding to 512×512 images. Feature extraction is not
timed (Inception's weights are not here, and it costs a fraction of a second per 64 images
on a GPU). One warm-up sample runs first; its time is reported apart.

The figure in the README needs a GPU: N = 64, 25 NFE. On a CPU use a tiny --n and --nfe
only to check that the script runs; that figure is labelled with the device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # before diffusers: nothing may reach the Hub

from skiptune.freeu import FREEU_DEFAULTS
from skiptune.models import load_model
from skiptune.sampling import sample_images
from skiptune.schedule import TuningSchedule

# diffusers' StableDiffusionPipeline components for runwayml/stable-diffusion-v1-5.
SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SD_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
PROMPTS, TOKENS = 8, 77


def save_sd15(root: Path, *, vae: bool) -> Path:
    """A random-init SD 1.5 pipeline folder (unet/, vae/, scheduler/, model_index.json)."""
    import diffusers

    torch.manual_seed(0)
    diffusers.UNet2DConditionModel(**SD15_UNET).save_pretrained(root / "unet")
    components: dict[str, Any] = {"unet": ["diffusers", "UNet2DConditionModel"]}
    if vae:
        diffusers.AutoencoderKL(**SD_VAE).save_pretrained(root / "vae")
        components["vae"] = ["diffusers", "AutoencoderKL"]
    diffusers.PNDMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, skip_prk_steps=True,
    ).save_pretrained(root / "scheduler")
    components["scheduler"] = ["diffusers", "PNDMScheduler"]
    index = {"_class_name": "StableDiffusionPipeline",
             "_diffusers_version": diffusers.__version__, **components}
    (root / "model_index.json").write_text(json.dumps(index))
    return root


def save_embeddings(path: Path) -> Path:
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(1)
    save_file({
        "prompt_embeds": torch.randn(PROMPTS, TOKENS, 768, generator=generator),
        "negative_prompt_embeds": torch.randn(1, TOKENS, 768, generator=generator),
    }, str(path))
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=64, help="samples per trial (N)")
    parser.add_argument("--nfe", type=int, default=25, help="denoiser calls per sample")
    parser.add_argument("--sampler", default="euler")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-vae", action="store_true", help="time sampling only")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="skiptune-sd15-") as tmp:
        started = time.perf_counter()
        folder = save_sd15(Path(tmp) / "sd15", vae=not args.no_vae)
        embeddings = save_embeddings(Path(tmp) / "prompts.safetensors")
        model = load_model(folder, device=args.device, conditioning={
            "embeddings": str(embeddings), "guidance_scale": args.guidance_scale})
        dtype = getattr(torch, args.dtype)
        if dtype != torch.float32:     # loaded as float32; half precision is cast here
            model.net.to(dtype)
            if model.decoder is not None:
                model.decoder.vae.to(dtype)
        setup_seconds = time.perf_counter() - started

    # A searched point as the objective would see it: ρ below 1 and SD 1.5's FreeU values.
    schedule = TuningSchedule(rho_bottom=0.7, freeu=FREEU_DEFAULTS["sd1"])

    def trial(count: int) -> float:
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        tick = time.perf_counter()
        images = sample_images(model, schedule=schedule, nfe=args.nfe, sampler=args.sampler,
                               num_samples=count, batch_size=args.batch_size)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        assert images.shape == (count, *model.image_shape)
        return time.perf_counter() - tick

    warmup = trial(1)
    seconds = trial(args.n)
    result = {
        "benchmark": "sd_trial_speed",
        "device": str(model.device),
        "device_name": (torch.cuda.get_device_name(model.device) if model.device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "torch_threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "n": args.n,
        "nfe": args.nfe,
        "sampler": args.sampler,
        "batch_size": args.batch_size,
        "guidance_scale": args.guidance_scale,
        "unet_evaluations_per_sample": args.nfe * (2 if args.guidance_scale > 1 else 1),
        "latents": list(model.noise_shape),
        "images": list(model.image_shape),
        "vae_decoding": model.decoder is not None,
        "seconds_per_trial": seconds,
        "seconds_per_sample": seconds / args.n,
        "warmup_seconds_one_sample": warmup,
        "setup_seconds": setup_seconds,
    }
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
