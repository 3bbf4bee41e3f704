"""Wrap a Stable-Diffusion-style ``UNet2DConditionModel`` (SD 1.x/2.x, SDXL) as an EDM denoiser.

Sources: a diffusers pipeline folder (``model_index.json`` with ``unet/``, ``scheduler/``,
``vae/`` and, for prompts given as text, ``text_encoder/`` + ``tokenizer/``), or a bare
``UNet2DConditionModel`` folder with its scheduler config beside it or in ``../scheduler/``.
Everything is read offline (``local_files_only``).

The U-Net works on VAE latents: sampling runs in latent σ-space exactly as for
``UNet2DModel`` (σ = √((1 − ᾱ)/ᾱ) from the scheduler's training table, input scaled by
1/√(σ² + 1), ε- or v-prediction converted to x0; see ``diffusers_unet``), and the VAE
decodes latents/``scaling_factor`` into images in [-1, 1] for the metric, a few at a time.
Without a VAE (a bare U-Net folder) the "images" are the latents themselves.

Each sample's prompt embedding comes from its seed (``skiptune.models._prompts``).
Classifier-free guidance runs inside the denoiser, as diffusers' pipelines run it: the
batch is doubled as ``cat([negative, prompt])`` and the prediction is
``uncond + g·(cond − uncond)``; per-sample skip factors are tiled over both halves by the
hooks. The up blocks get their skips by keyword (``res_hidden_states_tuple=``); a probe
pass finds that, and the skip sites name the keyword.

A pipeline whose scheduler is LCM's or SD-Turbo's samples as they do: families
``diffusers-lcm`` and ``diffusers-turbo``, with their boundary condition, guidance and
default sampler (:mod:`.diffusers_sd_distilled`).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import torch

from skiptune._install import install_hint
from skiptune.errors import CheckpointError, ConfigurationError
from skiptune.models._base import TunableModel, fingerprint_state_dict
from skiptune.models._diffusers_common import (
    PREDICTION_TYPES,
    VpInput,
    config_sample_shape,
    discrete_sigmas_from_scheduler_config,
    probe_size,
    probe_skip_inputs,
    read_json,
    scheduler_config_path,
    up_block_sites,
    x0_from_prediction,
)
from skiptune.models._prompts import PromptConditioner, UNetInfo
from skiptune.models.diffusers_sd_distilled import (
    LcmBoundary,
    distillation,
    guidance_embedding,
    pipeline_sampling,
)

__all__ = [
    "SUPPORTED_UP_BLOCKS",
    "UNetInfo",
    "freeu_family",
    "is_conditional_unet_folder",
    "is_pipeline_folder",
    "load",
    "scheduler_distillation",
]

SUPPORTED_UP_BLOCKS = frozenset({"UpBlock2D", "CrossAttnUpBlock2D"})
_CLASS = "UNet2DConditionModel"
_DECODE_BATCH = 8   # latents decoded at once: a 512² VAE decode needs far more memory than a step


def _class_name(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data.get("_class_name") if isinstance(data, dict) else None


def is_pipeline_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder with a ``model_index.json`` (a saved diffusers pipeline)."""
    return (Path(path) / "model_index.json").is_file()


def is_conditional_unet_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a ``UNet2DConditionModel``, bare or as a pipeline's ``unet/``."""
    folder = Path(path)
    names = (_class_name(folder / "config.json"), _class_name(folder / "unet" / "config.json"))
    return _CLASS in names


def scheduler_distillation(path: str | Path) -> str | None:
    """``"lcm"`` or ``"turbo"`` for a pipeline or ``UNet2DConditionModel`` folder whose scheduler
    config samples as LCM or SD-Turbo do (see :mod:`.diffusers_sd_distilled`), else None.

    Reads that config only, so it works without diffusers installed; never raises (a
    damaged config is named by :func:`load`).
    """
    folder = Path(path)
    unet_dir = folder / "unet" if is_pipeline_folder(folder) else folder
    try:
        config = json.loads(scheduler_config_path(unet_dir).read_text(encoding="utf-8"))
    except (CheckpointError, OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return distillation(config) if isinstance(config, dict) else None


def freeu_family(config: Any) -> str:
    """Which FreeU defaults suit this U-Net: ``sdxl``, ``sd2`` or ``sd1``.

    SDXL has the ``text_time`` added conditioning; SD 2.x cross-attends to OpenCLIP's
    1024-wide embeddings; everything else (SD 1.x's 768, small custom nets) counts as SD 1.x.
    """
    if config.addition_embed_type == "text_time":
        return "sdxl"
    if int(config.cross_attention_dim) == 1024:
        return "sd2"
    return "sd1"


def load(
    path: str | Path, *, device: torch.device | str = "cpu", variant: str | None = None
) -> TunableModel:
    """Load a Stable-Diffusion-style pipeline or ``UNet2DConditionModel`` folder, offline.

    Args:
        path: a pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``, ``vae/``)
            or a bare ``UNet2DConditionModel`` folder with its scheduler config.
        device: where to put the nets.
        variant: the weights variant to read (``fp16``: ``*.fp16.safetensors``); None: the
            plain weights.

    Returns:
        A :class:`TunableModel` with family ``"diffusers-sd"`` (``"diffusers-lcm"``,
        ``"diffusers-turbo"`` for a distilled pipeline, see :mod:`.diffusers_sd_distilled`,
        with its ``default_sampler``): sampling runs on latents
        (``sample_shape``), ``decoder`` turns them into images in [-1, 1] (``image_shape``),
        and ``conditioner`` draws each sample's prompt embedding once the user has given
        prompts or embeddings (``load_model(..., conditioning={"prompts": ...})``).

    Raises:
        CheckpointError: no ``unet/`` in a pipeline folder, diffusers missing, a U-Net kind
            or layout skiptune does not support, an unreadable folder, or an LCM scheduler
            config LCM cannot sample with.
    """
    folder = Path(path).expanduser()
    pipeline = is_pipeline_folder(folder)
    unet_dir = folder / "unet" if pipeline else folder
    if _class_name(unet_dir / "config.json") != _CLASS:
        if pipeline:
            raise CheckpointError(
                f"pipeline folder {str(folder)!r} has no unet/ with a UNet2DConditionModel "
                "config.json; save the whole pipeline with pipe.save_pretrained(folder)"
            )
        raise CheckpointError(
            f"{str(folder)!r} has no config.json with _class_name {_CLASS}; pass a pipeline "
            "folder or the folder UNet2DConditionModel.save_pretrained wrote"
        )
    try:
        import diffusers
    except ImportError as e:
        raise CheckpointError(
            f"{str(folder)!r} is a diffusers folder, but diffusers is not installed; run: "
            f"{install_hint('diffusers')}"
        ) from e
    scheduler_path = scheduler_config_path(unet_dir)
    scheduler_config = read_json(scheduler_path)
    sigmas = discrete_sigmas_from_scheduler_config(scheduler_config)
    prediction_type = str(scheduler_config.get("prediction_type", "epsilon"))
    if prediction_type not in ("epsilon", "v_prediction"):
        raise CheckpointError(
            f"{scheduler_path} has prediction_type {prediction_type!r}; skiptune supports "
            f"epsilon and v_prediction for conditional U-Nets (of {', '.join(PREDICTION_TYPES)})"
        )
    net = _from_pretrained(
        diffusers.UNet2DConditionModel, unet_dir, "UNet2DConditionModel", variant
    )
    config = net.config
    _check_supported(unet_dir, config)
    sampling = pipeline_sampling(scheduler_path, scheduler_config, num_train=len(sigmas),
                                 embeds_guidance=config.time_cond_proj_dim is not None)
    vae = None
    if pipeline and (folder / "vae" / "config.json").is_file():
        vae = _from_pretrained(diffusers.AutoencoderKL, folder / "vae", "AutoencoderKL", variant)
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 8
    pooled_dim = _pooled_dim(net)
    info = UNetInfo(
        cross_attention_dim=int(config.cross_attention_dim),
        pooled_dim=pooled_dim,
        vae_scale_factor=vae_scale,
        folder=folder if pipeline else None,
        force_zeros_for_empty_prompt=_force_zeros(folder) if pipeline else pooled_dim is not None,
        family=freeu_family(config),
        guidance_embedding_dim=config.time_cond_proj_dim,
        default_guidance=sampling.default_guidance,
    )
    inputs = probe_skip_inputs(net, lambda: _probe_pass(net, info))
    skip_sites, freeu_stages = up_block_sites(str(unet_dir), net, inputs, SUPPORTED_UP_BLOCKS)

    net.to(device).eval()
    latent_shape = config_sample_shape(
        unet_dir, config, resolution="the latent resolution (64 for SD 1.x at 512², 128 for SDXL)"
    )
    weights = {f"unet.{k}": v for k, v in net.state_dict().items()}
    decoder = None
    image_shape = latent_shape
    if vae is not None:
        vae.to(device).eval()
        weights.update({f"vae.{k}": v for k, v in vae.state_dict().items()})
        decoder = _VaeDecoder(vae)
        image_shape = (3, latent_shape[1] * vae_scale, latent_shape[2] * vae_scale)
    table = sigmas.to(torch.float32)
    return TunableModel(
        net=net,
        denoise_fn=_ConditionalDenoiser(
            net, log_sigmas=sigmas.log(), prediction_type=prediction_type, info=info,
            boundary=sampling.boundary,
        ),
        skip_sites=skip_sites,
        image_shape=image_shape,
        sigma_min=float(table[0]),
        sigma_max=float(table[-1]),
        # The VAE shapes the images the metric sees, so its weights are part of the identity.
        fingerprint=fingerprint_state_dict(weights),
        family=sampling.family,
        sigma_data=0.5,
        discrete_sigmas=table.to(device),
        metadata={
            "diffusers_version": diffusers.__version__,
            "scheduler": scheduler_config.get("_class_name", ""),
            "num_train_timesteps": len(sigmas),
            "prediction_type": prediction_type,
            "vae": vae is not None,
            "guidance_embedding": info.guidance_embedding_dim is not None,
        },
        source=str(folder),
        conditioner=PromptConditioner(info),
        freeu_stages=freeu_stages,
        sample_shape=latent_shape if vae is not None else None,
        decoder=decoder,
        # FID's standard network for decoded RGB images; latents need a network of yours.
        default_features="inception" if vae is not None else None,
        freeu_family=info.family,
        default_sampler=sampling.default_sampler,
        original_inference_steps=sampling.original_inference_steps,
    )


class _ConditionalDenoiser(VpInput):
    """D(x; σ, condition) of a discrete-time VP ``UNet2DConditionModel``, with guidance.

    ``condition`` (from :class:`~skiptune.models._prompts.PromptConditioner`) holds, per
    sample: ``prompt_embeds`` [B, L, D], ``guidance_scale`` [B], and when guided
    ``negative_prompt_embeds``; for SDXL also ``pooled_prompt_embeds`` (and its negative).
    A U-Net with a guidance embedding (LCM-distilled) takes each sample's scale as its
    ``timestep_cond`` and is never guided classifier-free; an LCM's ``boundary`` turns each
    x̂₀ into the scheduler's denoised sample.
    """

    def __init__(
        self, net: Any, *, log_sigmas: torch.Tensor, prediction_type: str, info: UNetInfo,
        boundary: LcmBoundary | None = None,
    ) -> None:
        super().__init__(log_sigmas)
        self.net = net
        self.prediction_type = prediction_type
        self.info = info
        self.boundary = boundary

    def __call__(
        self, x: torch.Tensor, sigma: torch.Tensor, *,
        condition: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if not isinstance(condition, dict) or "prompt_embeds" not in condition:
            raise ConfigurationError(
                "a text-conditioned U-Net denoises with a condition: pass "
                "condition=model.condition_for(seeds) (one row per sample)"
            )
        x_vp, t = self.vp_input(x, sigma)
        guidance = condition["guidance_scale"].to(device=x.device, dtype=x.dtype)
        width = self.info.guidance_embedding_dim
        guided = (width is None and "negative_prompt_embeds" in condition
                  and bool((guidance != 1).any()))
        inputs, steps = x_vp, t.float()
        embeds = condition["prompt_embeds"]
        pooled = condition.get("pooled_prompt_embeds")
        if guided:
            # diffusers' order: the unconditional half first.
            inputs, steps = torch.cat([inputs, inputs]), torch.cat([steps, steps])
            embeds = torch.cat([condition["negative_prompt_embeds"], embeds])
            if pooled is not None:
                pooled = torch.cat([condition["negative_pooled_prompt_embeds"], pooled])
        # An LCM-distilled U-Net takes the scale as an input instead.
        cond = None if width is None else guidance_embedding(guidance, width)
        output = self._call_net(inputs, steps, embeds, pooled, cond)
        if guided:
            uncond, conditional = output.chunk(2)
            g = guidance.view(-1, *([1] * (x.ndim - 1)))
            output = uncond + g * (conditional - uncond)
        x0 = x0_from_prediction(output.to(x.dtype), x, sigma, self.prediction_type)
        return x0 if self.boundary is None else self.boundary(x_vp, t, x0)

    def _call_net(
        self, x: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, pooled: torch.Tensor | None,
        timestep_cond: torch.Tensor | None,
    ) -> torch.Tensor:
        dtype = next(self.net.parameters()).dtype
        added = None
        if self.info.time_ids and pooled is not None:   # SDXL: pooled checked at load
            # SDXL micro-conditioning: original size, crop (0, 0), target size, in pixels.
            height, width = (d * self.info.vae_scale_factor for d in x.shape[-2:])
            ids = torch.tensor([height, width, 0, 0, height, width], device=x.device, dtype=dtype)
            added = {"text_embeds": pooled.to(dtype), "time_ids": ids.expand(x.shape[0], 6)}
        if timestep_cond is not None:
            timestep_cond = timestep_cond.to(device=x.device, dtype=dtype)
        return self.net(
            x.to(dtype), t, encoder_hidden_states=embeds.to(dtype), added_cond_kwargs=added,
            timestep_cond=timestep_cond, return_dict=False,
        )[0]


class _VaeDecoder:
    """Latents → images in [-1, 1] through the VAE, ``_DECODE_BATCH`` latents at a time."""

    def __init__(self, vae: Any) -> None:
        self.vae = vae
        self.scaling_factor = float(vae.config.scaling_factor)
        shift = getattr(vae.config, "shift_factor", None)
        self.shift_factor = float(shift) if shift is not None else 0.0

    def to_dtype(self, dtype: torch.dtype) -> None:
        """Run the VAE in ``dtype``, or in float32 where its config asks (``force_upcast``:
        SD's VAE overflows in float16, as diffusers' pipelines know)."""
        upcast = bool(getattr(self.vae.config, "force_upcast", False))
        self.vae.to(torch.float32 if upcast else dtype)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        dtype = next(self.vae.parameters()).dtype
        images = [
            self.vae.decode(
                (chunk / self.scaling_factor + self.shift_factor).to(dtype), return_dict=False
            )[0].to(latents.dtype).clamp(-1, 1)
            for chunk in latents.split(_DECODE_BATCH)
        ]
        return torch.cat(images)


def _from_pretrained(cls: Any, folder: Path, what: str, variant: str | None) -> Any:
    # diffusers' models carry no type information: their attributes are duck-typed here.
    try:
        # local_files_only: never reach for the Hub; low_cpu_mem_usage only with accelerate.
        return cls.from_pretrained(
            folder, local_files_only=True, variant=variant,
            low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None,
        )
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"cannot load the {what} in {str(folder)!r}: {type(e).__name__}: {e}"
        ) from e


def _check_supported(unet_dir: Path, config: Any) -> None:
    where = str(unet_dir)
    if config.in_channels != config.out_channels:
        raise CheckpointError(
            f"the U-Net in {where!r} takes {config.in_channels} channels but predicts "
            f"{config.out_channels} (an inpainting or depth model?); skiptune supports "
            "text-to-image U-Nets"
        )
    if config.class_embed_type is not None or config.num_class_embeds is not None:
        raise CheckpointError(f"the U-Net in {where!r} is class-conditional; not supported")
    if config.addition_embed_type not in (None, "text_time"):
        raise CheckpointError(
            f"the U-Net in {where!r} has addition_embed_type {config.addition_embed_type!r}; "
            "skiptune supports SD 1.x/2.x (none) and SDXL (text_time)"
        )
    if config.encoder_hid_dim is not None:
        raise CheckpointError(
            f"the U-Net in {where!r} needs an encoder projection (an image-conditioned "
            "model); skiptune supports text-to-image SD 1.x/2.x and SDXL, LCMs included"
        )


def _pooled_dim(net: Any) -> int | None:
    """SDXL's pooled text width: add_embedding's input minus six Fourier-embedded time ids."""
    if net.config.addition_embed_type != "text_time":
        return None
    return int(net.add_embedding.linear_1.in_features) - 6 * int(net.config.addition_time_embed_dim)


def _force_zeros(folder: Path) -> bool:
    index = read_json(folder / "model_index.json")
    return bool(index.get("force_zeros_for_empty_prompt", False))


def _probe_pass(net: Any, info: UNetInfo) -> Any:
    size = probe_size(net)
    dtype = next(net.parameters()).dtype
    x = torch.zeros(1, int(net.config.in_channels), size, size, dtype=dtype)
    embeds = torch.zeros(1, 1, info.cross_attention_dim, dtype=dtype)
    added = None
    if info.pooled_dim is not None:
        added = {"text_embeds": torch.zeros(1, info.pooled_dim, dtype=dtype),
                 "time_ids": torch.zeros(1, 6, dtype=dtype)}
    return net(x, 0, encoder_hidden_states=embeds, added_cond_kwargs=added, return_dict=False)
