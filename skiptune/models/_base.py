"""The model contract every adapter meets: a σ-space denoiser with named skip sites.

A conditional model (class labels, text prompts...) also carries a :class:`Conditioner`:
it draws each sample's condition from that sample's seed, so every trial of a search sees
the same conditions, as it sees the same noise (common random numbers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from skiptune.errors import ConfigurationError

__all__ = [
    "Condition",
    "Conditioner",
    "FreeUStage",
    "SkipSite",
    "TunableModel",
    "apply_conditioning",
    "condition_size",
    "condition_to",
    "fingerprint_state_dict",
]


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


DenoiseFn = Callable[..., torch.Tensor]
"""``(x, sigma) -> x0``; a conditional model's also takes ``condition=`` as a keyword."""

Condition = torch.Tensor | dict[str, torch.Tensor]
"""Per-sample conditioning, batch-first: one tensor (e.g. one-hot class labels
[batch, label_dim]) or named tensors (e.g. prompt embeddings), row j for sample j."""


class Conditioner(Protocol):
    """Draws the conditions of a conditional model, one per sample, from the samples' seeds."""

    @property
    def identity(self) -> dict[str, Any]:
        """JSON-able description of what the drawn conditions depend on (the user's choices
        included): stored with a study and compared when it resumes."""
        ...

    def __call__(self, seeds: Sequence[int]) -> Condition:
        """The conditions of the samples with these noise seeds, batch-first, on the CPU.

        Sample j's condition depends on ``seeds[j]`` alone, never on the batch it is in.
        """
        ...

    def with_options(self, options: Mapping[str, Any]) -> Conditioner:
        """A conditioner with the user's choices applied (e.g. ``{"class_labels": [3]}``);
        raises ConfigurationError for an option it does not know or a value it cannot take."""
        ...


def condition_to(condition: Condition, device: torch.device | str) -> Condition:
    """The same condition with every tensor on ``device``."""
    if isinstance(condition, dict):
        return {name: value.to(device) for name, value in condition.items()}
    return condition.to(device)


def condition_size(condition: Condition) -> int:
    """The batch size of a condition (its tensors' first dimension)."""
    if isinstance(condition, dict):
        sizes = {int(value.shape[0]) for value in condition.values()}
        if len(sizes) != 1:
            raise ConfigurationError(
                f"a condition's tensors must share one batch size, got {sorted(sizes)}"
            )
        return sizes.pop()
    return int(condition.shape[0])


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
        conditioner: draws per-sample conditions of a conditional model from the seeds; None
            for an unconditional model (whose ``denoise_fn`` then takes no condition).
        metadata: what the checkpoint says of itself (dataset, resolution, assets…).
        freeu_stages: the up stages FreeU acts on, deepest first (empty: no FreeU).
        sample_shape: (channels, height, width) of what the sampler works on when that is not
            the image, e.g. a latent diffusion model's latents; None: the image itself.
        decoder: latents [N, *sample_shape] → images [N, *image_shape] in [-1, 1] (a VAE's
            decoder); None when the sampler works on images.
        default_features: the feature network to score this model with when the user names
            none (``"inception"`` for decoded RGB images); None: the digit network.
        reference: file name in ``skiptune/assets/`` of the reference statistics the model
            carries (the demo's ``mnist_reference.npz``); None: the user must pass one.
        feature_net: file name in ``skiptune/assets/`` of the digit network to use for
            ``"digits"``; None: the shipped ``digit_features.pt``.
        freeu_family: which FreeU defaults suit the model (``sd1``, ``sd2``, ``sdxl``); None:
            FreeU's authors recommend none for it.
        dtype: what the net computes in (``load_model(..., dtype=)``); ``denoise`` takes and
            returns the caller's dtype whatever it is.
        default_sampler: the sampler a search uses when the user names none, for a model
            that only samples well with its own (``"consistency"`` for a distilled model,
            ``"lcm"`` for an LCM, ``"euler_ancestral_discrete"`` for SD-/SDXL-Turbo);
            None: skiptune's default (``heun``).
        original_inference_steps: for a Latent Consistency Model, how many evenly skipped
            training timesteps it was distilled on (its ``LCMScheduler``'s
            ``original_inference_steps``); the ``lcm`` sampler steps among them. None: LCM's 50.
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
    conditioner: Conditioner | None = None
    freeu_stages: tuple[FreeUStage, ...] = ()
    sample_shape: tuple[int, int, int] | None = None
    decoder: Callable[[torch.Tensor], torch.Tensor] | None = None
    default_features: str | None = None
    reference: str | None = None
    feature_net: str | None = None
    freeu_family: str | None = None
    dtype: torch.dtype = torch.float32
    default_sampler: str | None = None
    original_inference_steps: int | None = None

    @property
    def noise_shape(self) -> tuple[int, int, int]:
        """The shape of one sample's initial noise: the latents' for a latent model."""
        return self.sample_shape if self.sample_shape is not None else self.image_shape

    @torch.no_grad()
    def to_images(self, samples: torch.Tensor) -> torch.Tensor:
        """What the sampler produced, as images in [-1, 1] (decoded when it works in latents)."""
        return samples if self.decoder is None else self.decoder(samples)

    @property
    def device(self) -> torch.device:
        for tensor in self.net.parameters():
            return tensor.device
        return torch.device("cpu")

    @property
    def num_skips(self) -> int:
        return len(self.skip_sites)

    @property
    def is_conditional(self) -> bool:
        return self.conditioner is not None

    def condition_for(self, seeds: Sequence[int]) -> Condition | None:
        """Each sample's condition, drawn from its noise seed, on the model's device.

        The same seeds give the same conditions in every trial (common random numbers);
        None for an unconditional model.
        """
        if self.conditioner is None:
            return None
        return condition_to(self.conditioner(list(seeds)), self.device)

    @torch.no_grad()
    def denoise(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | float,
        condition: Condition | None = None,
    ) -> torch.Tensor:
        """D(x; σ): the estimate of the clean image y given x = y + σ·n (images in [-1, 1]).

        ``condition`` (batch-first, see :data:`Condition`) is passed to ``denoise_fn`` as a
        keyword only when given, so an unconditional adapter's ``(x, sigma)`` keeps working.
        """
        if not torch.is_tensor(sigma) or sigma.ndim == 0:
            sigma = torch.full((x.shape[0],), float(sigma), device=x.device, dtype=x.dtype)
        if condition is None:
            return self.denoise_fn(x, sigma)
        return self.denoise_fn(x, sigma, condition=condition)

    __call__ = denoise

    def to(self, device: torch.device | str) -> TunableModel:
        self.net.to(device)
        if self.discrete_sigmas is not None:
            self.discrete_sigmas = self.discrete_sigmas.to(device)
        return self


def not_images_reason(model: TunableModel) -> str | None:
    """Why ``model``'s samples are no pictures (a bare ``UNet2DConditionModel`` folder samples
    4-channel VAE latents, which no built-in feature network or PNG takes); None for 1- or
    3-channel images. One clause, completed by the caller with what else to pass."""
    channels = model.image_shape[0]
    if channels in (1, 3):
        return None
    return (f"{model.source} samples {channels}-channel latents, not images (no VAE decodes "
            "them); pass the pipeline folder with its vae/")


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


def apply_conditioning(model: TunableModel, options: Mapping[str, Any] | None) -> TunableModel:
    """Apply the user's conditioning choices (e.g. ``{"class_labels": [3]}``) to ``model``.

    Raises ConfigurationError when options are given for an unconditional model.
    """
    if not options:
        return model
    if model.conditioner is None:
        raise ConfigurationError(
            f"model {model.source or model.family!r} is unconditional: it takes no "
            f"{', '.join(sorted(options))}; leave that option out"
        )
    model.conditioner = model.conditioner.with_options(options)
    return model
