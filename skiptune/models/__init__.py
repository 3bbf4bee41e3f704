"""Model adapters: load a checkpoint as a σ-space denoiser with tunable skip sites."""

from __future__ import annotations

from skiptune.models._base import (
    Condition,
    Conditioner,
    FreeUStage,
    SkipSite,
    TunableModel,
    condition_size,
    condition_to,
    fingerprint_state_dict,
    not_images_reason,
)
from skiptune.models._loading import load_model, resolve_device
from skiptune.models.native import save_checkpoint
from skiptune.models.unet import EDMUNet, PreconditionedEDMUNet, UNetConfig

__all__ = [
    "Condition",
    "Conditioner",
    "EDMUNet",
    "FreeUStage",
    "PreconditionedEDMUNet",
    "SkipSite",
    "TunableModel",
    "UNetConfig",
    "condition_size",
    "condition_to",
    "fingerprint_state_dict",
    "load_model",
    "not_images_reason",
    "resolve_device",
    "save_checkpoint",
]
