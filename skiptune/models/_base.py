"""The model contract every adapter meets: a σ-space denoiser with named skip sites."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["FreeUStage", "SkipSite", "TunableModel", "fingerprint_state_dict"]


@dataclass(frozen=True)
class SkipSite:
    """Where the decoder consumes one skip tensor, so that its factor can be applied there.

    ``module`` is the decoder module that receives the skip. With ``input_index=None`` and
    ``input_name=None`` the skip is the module's *output* (use this only for a tap, such as
    an ``nn.Identity``, whose output feeds nothing but the decoder); otherwise it is the
    module's input: the keyword argument ``input_name`` when the caller passes it by name
    (diffusers' ``UNet2DConditionModel`` calls its up blocks with
    ``res_hidden_states_tuple=``), else the positional input ``input_index``; and, when
    that input is a tuple of skips, its element ``tuple_index``. Never point a site at an
    encoder output that also feeds the next encoder block: scaling it there would change
    the encoder too.
    """

    name: str
    module: nn.Module = field(compare=False, repr=False)
    input_index: int | None = None
    tuple_index: int | None = None
    input_name: str | None = None

    @property
    def is_output(self) -> bool:
        return self.input_index is None and self.input_name is None


@dataclass(frozen=True)
class FreeUStage:
    """One up stage where FreeU acts (Si et al. 2023): stage 0 is the deepest.

    Each module of ``consumers`` takes ``cat([h, skip], dim=1)`` as its first positional
    input, in the order the stage pops its skips; ``skips`` are the stage's skip sites in
    that same order, so the number of skip channels of each consumer is known at run time.
    """

    name: str
    consumers: tuple[nn.Module, ...] = field(compare=False, repr=False)
    skips: tuple[SkipSite, ...] = field(compare=False, repr=False)


DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TunableModel:
    """A loaded diffusion model seen as an EDM denoiser D(x; σ) with tunable skip sites.

    Attributes:
        net: the underlying ``nn.Module`` (in eval mode).
        denoise_fn: ``(x, sigma) -> x0``: x = y + σ·n with images y in [-1, 1], ``sigma`` a
            tensor of shape [batch]; returns the estimate of y.
        skip_sites: the skips ordered bottom (deepest, index 0) → top (shallowest).
        image_shape: (channels, height, width) of one image.
        sigma_min, sigma_max: the σ range the model was trained on.
        sigma_data: standard deviation of the data, EDM's σ_data.
        fingerprint: hex SHA-256 of the weights; stable across saves and devices.
        family: which adapter loaded it (``"skiptune"``, ``"diffusers"``, ``"custom"``…).
        discrete_sigmas: ascending σ of a discrete-time (VP) model's training timesteps, or None.
        metadata: what the checkpoint says of itself (dataset, resolution, assets…).
        freeu_stages: the up stages FreeU acts on, deepest first (empty: no FreeU).
    """

    net: nn.Module
    denoise_fn: DenoiseFn
    skip_sites: tuple[SkipSite, ...]
    image_shape: tuple[int, int, int]
    sigma_min: float
    sigma_max: float
    fingerprint: str
    family: str
    sigma_data: float = 0.5
    discrete_sigmas: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    freeu_stages: tuple[FreeUStage, ...] = ()

    @property
    def device(self) -> torch.device:
        for tensor in self.net.parameters():
            return tensor.device
        return torch.device("cpu")

    @property
    def num_skips(self) -> int:
        return len(self.skip_sites)

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """D(x; σ): the estimate of the clean image y given x = y + σ·n (images in [-1, 1])."""
        if not torch.is_tensor(sigma) or sigma.ndim == 0:
            sigma = torch.full((x.shape[0],), float(sigma), device=x.device, dtype=x.dtype)
        return self.denoise_fn(x, sigma)

    __call__ = denoise

    def to(self, device: torch.device | str) -> TunableModel:
        self.net.to(device)
        if self.discrete_sigmas is not None:
            self.discrete_sigmas = self.discrete_sigmas.to(device)
        return self


def fingerprint_state_dict(state_dict: dict[str, torch.Tensor]) -> str:
    """Hex SHA-256 over the names, dtypes, shapes and bytes of the tensors, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        # reshape first: a 0-d tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes.
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
