"""Wrap a diffusers ``UNet2DModel`` (a discrete-time DDPM-family model) as an EDM denoiser.

A folder saved with ``UNet2DModel.save_pretrained`` holds ``config.json`` and the weights;
its scheduler config lies beside them (``scheduler_config.json``) or, as pipelines save it,
in ``../scheduler/``. A pipeline folder (``unet/`` and ``scheduler/`` inside) works too.

The VP model sees x_vp = α·y + s·n with α = √ᾱ_t, s = √(1 − ᾱ_t); in EDM's σ-space
(x = y + σ·n) that is x = x_vp/α with σ = s/α = √((1 − ᾱ)/ᾱ) (Karras et al. 2022, §C.3;
Song et al. 2021). So D(x; σ) feeds the net x/√(σ² + 1) at the training timestep whose σ
matches, interpolated in log σ between the table's entries, and converts the prediction
(ε, v or x0) into x0.

Each up block of ``UNet2DModel`` receives its skips as the tuple ``res_samples`` (its
second positional input) and pops them from the end; the skip sites point there. A probe
pass finds how the skips arrive (positional here, by keyword in ``UNet2DConditionModel``,
see ``diffusers_sd``). FreeU acts on the first two up blocks, as ``enable_freeu`` would if
``UNet2DModel`` had it.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from skiptune._install import install_hint
from skiptune.errors import CheckpointError
from skiptune.models._base import FreeUStage, SkipSite, TunableModel, fingerprint_state_dict
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

__all__ = [
    "SUPPORTED_UP_BLOCKS",
    "import_diffusers",
    "is_diffusers_folder",
    "load",
    "read_unet",
    "unet_sites",
]

# Up blocks that take (hidden_states, res_hidden_states_tuple, temb, ...) positionally and
# pop one skip from the end of the tuple per resnet (checked in diffusers' unet_2d_blocks.py).
SUPPORTED_UP_BLOCKS = frozenset(
    {"UpBlock2D", "AttnUpBlock2D", "SkipUpBlock2D", "AttnSkipUpBlock2D", "ResnetUpsampleBlock2D"}
)


def is_diffusers_folder(path: str | Path) -> bool:
    """Whether ``path`` is a ``UNet2DModel`` folder, or a pipeline folder with one in ``unet/``.

    Reads ``config.json`` only, so it works without diffusers installed.
    """
    return _unet_folder(Path(path)) is not None


def load(
    path: str | Path, *, device: torch.device | str = "cpu", variant: str | None = None
) -> TunableModel:
    """Load a ``UNet2DModel`` folder, offline, as a σ-space denoiser with its skip sites.

    Args:
        path: the folder ``save_pretrained`` wrote (or a pipeline folder with ``unet/``);
            the scheduler config must be beside it or in ``../scheduler/``.
        device: where to put the net.
        variant: the weights variant to read (``fp16``: ``*.fp16.safetensors``); None: the
            plain weights.

    Returns:
        A :class:`TunableModel` with family ``"diffusers"``: images in [-1, 1], σ from the
        training table (``discrete_sigmas``, ascending; ``sigma_min``/``sigma_max`` its ends),
        and one skip site per tensor the encoder hands to the decoder, bottom → top.

    Raises:
        CheckpointError: diffusers is not installed, the folder or its scheduler config is
            missing or unreadable, or the model is of a kind skiptune does not support
            (class-conditional, Fourier time embedding, unknown block, schedule or prediction).
    """
    folder = Path(path).expanduser()
    unet_dir = _unet_folder(folder)
    if unet_dir is None:
        raise CheckpointError(
            f"{str(folder)!r} has no config.json with _class_name UNet2DModel; pass the folder "
            "that UNet2DModel.save_pretrained wrote"
        )
    diffusers = import_diffusers(folder, "a diffusers UNet2DModel folder")
    scheduler_path = scheduler_config_path(unet_dir)
    scheduler_config = read_json(scheduler_path)
    sigmas = discrete_sigmas_from_scheduler_config(scheduler_config)
    # Configs written before diffusers had v-prediction omit the key: they predict ε.
    prediction_type = str(scheduler_config.get("prediction_type", "epsilon"))
    if prediction_type not in PREDICTION_TYPES:
        raise CheckpointError(
            f"{scheduler_path} has prediction_type {prediction_type!r}; skiptune supports "
            f"{', '.join(PREDICTION_TYPES)}"
        )

    net = read_unet(unet_dir, variant=variant)
    config = net.config
    _check_supported(unet_dir, config)
    out_channels = _prediction_channels(unet_dir, config, scheduler_config)
    skip_sites, freeu_stages = unet_sites(unet_dir, net)

    net.to(device)
    net.eval()
    denoiser = _DiffusersDenoiser(
        net,
        log_sigmas=sigmas.log(),
        prediction_type=prediction_type,
        channels=out_channels,
        integer_timesteps=config.time_embedding_type == "learned",
    )
    table = sigmas.to(torch.float32)
    return TunableModel(
        net=net,
        denoise_fn=denoiser,
        skip_sites=skip_sites,
        image_shape=config_sample_shape(unet_dir, config),
        # The ends of the float32 table itself, so that σ snapped to the table match them.
        sigma_min=float(table[0]),
        sigma_max=float(table[-1]),
        fingerprint=fingerprint_state_dict(net.state_dict()),
        family="diffusers",
        sigma_data=0.5,
        discrete_sigmas=table.to(device),
        metadata={
            "diffusers_version": diffusers.__version__,
            "scheduler": scheduler_config.get("_class_name", ""),
            "beta_schedule": scheduler_config.get("beta_schedule"),
            "num_train_timesteps": len(sigmas),
            "prediction_type": prediction_type,
        },
        source=str(folder),
        freeu_stages=freeu_stages,
    )


def import_diffusers(folder: Path, what: str) -> ModuleType:
    """diffusers, or one CheckpointError line saying that ``folder`` (``what``) needs it."""
    try:
        import diffusers
    except ImportError as e:
        raise CheckpointError(
            f"{str(folder)!r} is {what}, but diffusers is not installed; "
            f"run: {install_hint('diffusers')}"
        ) from e
    return diffusers


def read_unet(unet_dir: Path, *, variant: str | None) -> Any:
    """The ``UNet2DModel`` saved in ``unet_dir``, read offline; one CheckpointError line when
    diffusers cannot read it. (diffusers' models carry no type information: ``Any``.)"""
    import diffusers

    try:
        # local_files_only: never reach for the Hub. low_cpu_mem_usage needs accelerate; asking
        # for it only when present avoids diffusers' warning about its absence.
        return diffusers.UNet2DModel.from_pretrained(
            unet_dir,
            local_files_only=True,
            variant=variant,
            low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None,
        )
    except Exception as e:           # a damaged config.json can make it raise anything
        raise CheckpointError(
            f"cannot load the UNet2DModel in {str(unet_dir)!r}: {type(e).__name__}: "
            f"{' '.join(str(e).split())[:300]}"
        ) from e


def unet_sites(unet_dir: Path, net: Any) -> tuple[tuple[SkipSite, ...], tuple[FreeUStage, ...]]:
    """The skip sites (bottom → top) and FreeU stages of a ``UNet2DModel``, found by a probe
    pass on a tiny input; a class-conditional net is probed with class 0."""
    size = probe_size(net)
    probe_input = torch.zeros(
        1, int(net.config.in_channels), size, size, dtype=next(net.parameters()).dtype
    )
    labels = None if net.class_embedding is None else torch.zeros(1, dtype=torch.long)
    inputs = probe_skip_inputs(
        net, lambda: net(probe_input, 0, class_labels=labels, return_dict=False)
    )
    return up_block_sites(str(unet_dir), net, inputs, SUPPORTED_UP_BLOCKS)


class _DiffusersDenoiser(VpInput):
    """D(x; σ) for a discrete-time VP ``UNet2DModel`` (see the module docstring)."""

    def __init__(
        self,
        net: Any,                              # a diffusers UNet2DModel (no type information)
        *,
        log_sigmas: torch.Tensor,
        prediction_type: str,
        channels: int,
        integer_timesteps: bool,
    ) -> None:
        super().__init__(log_sigmas)
        self.net = net
        self.prediction_type = prediction_type
        self.channels = channels
        self.integer_timesteps = integer_timesteps

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x_vp, t = self.vp_input(x, sigma)
        # A learned (nn.Embedding) time embedding takes integer timesteps only.
        t = t.round().long() if self.integer_timesteps else t.float()
        net_dtype = next(self.net.parameters()).dtype
        output = self.net(x_vp.to(net_dtype), t, return_dict=False)[0]
        # A learned-variance model appends its variance channels; only the first half is ε/v/x0.
        output = output[:, : self.channels].to(x.dtype)
        return x0_from_prediction(output, x, sigma, self.prediction_type)




def _is_unet_config(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("_class_name") == "UNet2DModel"


def _unet_folder(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    if _is_unet_config(folder / "config.json"):
        return folder
    if _is_unet_config(folder / "unet" / "config.json"):
        return folder / "unet"
    return None




def _check_supported(unet_dir: Path, config: Any) -> None:
    if config.time_embedding_type == "fourier":
        raise CheckpointError(
            f"the UNet2DModel in {str(unet_dir)!r} uses a Fourier time embedding (a score-SDE "
            "VE model); skiptune supports DDPM-family models with positional or learned timesteps"
        )
    if config.num_class_embeds is not None or config.class_embed_type is not None:
        raise CheckpointError(
            f"the UNet2DModel in {str(unet_dir)!r} is class-conditional; skiptune supports "
            "unconditional UNet2DModel only"
        )


def _prediction_channels(unet_dir: Path, config: Any, scheduler_config: Mapping) -> int:
    in_channels, out_channels = int(config.in_channels), int(config.out_channels)
    if out_channels == in_channels:
        return in_channels
    if out_channels == 2 * in_channels and scheduler_config.get("variance_type") in (
        "learned",
        "learned_range",
    ):
        return in_channels
    raise CheckpointError(
        f"the UNet2DModel in {str(unet_dir)!r} has in_channels={in_channels} but "
        f"out_channels={out_channels}; skiptune needs a prediction with the image's channels"
    )












