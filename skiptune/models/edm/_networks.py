"""EDM's U-Nets (DDPM++/NCSN++ ``SongUNet``, ADM ``DhariwalUNet``) and its four
preconditionings, written for skiptune with EDM's parameter names (see ``_layers``).

Each U-Net's decoder concatenates the skips it pops through its own ``nn.Identity`` tap
(``skip_taps``, in consumption order: index 0 is the deepest skip, popped first). The taps
hold no parameters, so a snapshot's state dict still loads with ``strict=True``, and a
factor of 1 leaves the output bit-identical.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from skiptune.models.edm._layers import (
    Conv2d,
    FourierEmbedding,
    GroupNorm,
    Linear,
    PositionalEmbedding,
    UNetBlock,
)

__all__ = [
    "NETWORKS",
    "PRECONDITIONERS",
    "DhariwalUNet",
    "EDMPrecond",
    "SongUNet",
    "VEPrecond",
    "VPPrecond",
    "iDDPMPrecond",
]


def _consumes_skip(name: str) -> bool:
    """Whether decoder entry ``name`` takes a popped skip: the ``…_block{i}`` blocks do; the
    bottleneck (``_in0``, ``_in1``), the upsamplers and the ``aux`` output layers do not."""
    return "_block" in name


def _skip_taps(decoder: nn.ModuleDict) -> nn.ModuleList:
    return nn.ModuleList(nn.Identity() for name in decoder if _consumes_skip(name))


def _out_channels(block: nn.Module) -> int:
    """The output channels of an encoder layer (a Conv2d or a UNetBlock)."""
    return int(cast(Conv2d | UNetBlock, block).out_channels)


def _required_labels(class_labels: torch.Tensor | None) -> torch.Tensor:
    """A conditional network's one-hot labels; EDM's preconditioner always passes them."""
    if class_labels is None:
        raise ValueError("a class-conditional EDM network needs class_labels")
    return class_labels


class SongUNet(nn.Module):
    """DDPM++ (positional embedding, standard encoder, filter [1, 1]) and NCSN++ (Fourier
    embedding, residual encoder, filter [1, 3, 3, 1]) of Song et al. 2021, as EDM builds them.

    ``forward(x, noise_labels, class_labels, augment_labels=None)``: x [B, C, H, W] (already
    scaled by c_in), noise_labels [B] (c_noise), class_labels [B, label_dim] or None.
    """

    def __init__(
        self,
        img_resolution: int,
        in_channels: int,
        out_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        channel_mult_emb: int = 4,
        num_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.10,
        label_dropout: float = 0,
        embedding_type: str = "positional",
        channel_mult_noise: int = 1,
        encoder_type: str = "standard",
        decoder_type: str = "standard",
        resample_filter: Sequence[int] = (1, 1),
    ) -> None:
        if embedding_type not in ("positional", "fourier"):
            raise ValueError(f"embedding_type {embedding_type!r}: use 'positional' or 'fourier'")
        if encoder_type not in ("standard", "skip", "residual"):
            raise ValueError(f"encoder_type {encoder_type!r}: use standard, skip or residual")
        if decoder_type not in ("standard", "skip"):
            raise ValueError(f"decoder_type {decoder_type!r}: use standard or skip")
        super().__init__()
        self.label_dropout = label_dropout
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        block_kwargs: dict[str, Any] = {
            "emb_channels": emb_channels, "num_heads": 1, "dropout": dropout,
            "skip_scale": math.sqrt(0.5), "eps": 1e-6, "resample_filter": resample_filter,
            "resample_proj": True, "adaptive_scale": False,
        }

        # Mapping: noise level (plus class and augmentation labels) → embedding.
        self.map_noise = (
            PositionalEmbedding(noise_channels, endpoint=True)
            if embedding_type == "positional"
            else FourierEmbedding(noise_channels)
        )
        self.map_label = Linear(label_dim, noise_channels) if label_dim else None
        self.map_augment = Linear(augment_dim, noise_channels, bias=False) if augment_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)

        # Encoder: every block's output is pushed as a skip; "aux" layers feed the input
        # image in again at each resolution (NCSN++'s skip and residual encoders).
        self.enc = nn.ModuleDict()
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, 3)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block_kwargs)
                if encoder_type == "skip":
                    self.enc[f"{res}x{res}_aux_down"] = Conv2d(
                        caux, caux, 0, down=True, resample_filter=resample_filter
                    )
                    self.enc[f"{res}x{res}_aux_skip"] = Conv2d(caux, cout, 1)
                if encoder_type == "residual":
                    self.enc[f"{res}x{res}_aux_residual"] = Conv2d(
                        caux, cout, 3, down=True, resample_filter=resample_filter,
                        fused_resample=True,
                    )
                    caux = cout
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, cout, attention=res in attn_resolutions, **block_kwargs
                )
        skip_channels = [_out_channels(b) for n, b in self.enc.items() if "aux" not in n]

        # Decoder: num_blocks + 1 blocks per resolution, each taking one popped skip; the
        # output is produced at the top ("skip" decoder: at every resolution, upsampled and
        # summed).
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block_kwargs)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block_kwargs)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block_kwargs)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skip_channels.pop(), model_channels * mult
                attention = idx == num_blocks and res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, cout, attention=attention, **block_kwargs
                )
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    self.dec[f"{res}x{res}_aux_up"] = Conv2d(
                        out_channels, out_channels, 0, up=True, resample_filter=resample_filter
                    )
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(cout, out_channels, 3)
        self.skip_taps = _skip_taps(self.dec)

    def forward(
        self,
        x: torch.Tensor,
        noise_labels: torch.Tensor,
        class_labels: torch.Tensor | None,
        augment_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # Mapping.
        emb = self.map_noise(noise_labels)
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(*emb.shape)  # sin first
        if self.map_label is not None:
            labels = _required_labels(class_labels)
            if self.training and self.label_dropout:
                keep = torch.rand([x.shape[0], 1], device=x.device) >= self.label_dropout
                labels = labels * keep.to(labels.dtype)
            emb = emb + self.map_label(labels * math.sqrt(self.map_label.in_features))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = F.silu(self.map_layer0(emb))
        emb = F.silu(self.map_layer1(emb))

        # Encoder.
        skips: list[torch.Tensor] = []
        aux = x
        for name, block in self.enc.items():
            if "aux_down" in name:
                aux = block(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + block(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + block(aux)) / math.sqrt(2)
            else:
                x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
                skips.append(x)

        # Decoder: the tap before each concatenation is where skip-tuning scales the skip.
        taps = iter(self.skip_taps)
        image: torch.Tensor | None = None      # the output, built up level by level
        out = x
        for name, block in self.dec.items():
            if "aux_up" in name:
                image = block(image)
            elif "aux_norm" in name:
                out = block(x)
            elif "aux_conv" in name:
                out = block(F.silu(out))       # after this level's aux_norm
                image = out if image is None else out + image
            else:
                if _consumes_skip(name):
                    x = torch.cat([x, next(taps)(skips.pop())], dim=1)
                x = block(x, emb)
        if image is None:
            raise ValueError("the decoder has no aux_conv output layer")
        return image


class DhariwalUNet(nn.Module):
    """ADM (Dhariwal & Nichol 2021) as EDM builds it: the ImageNet-64 architecture.

    ``forward(x, noise_labels, class_labels, augment_labels=None)`` as :class:`SongUNet`.
    """

    def __init__(
        self,
        img_resolution: int,
        in_channels: int,
        out_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 192,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        channel_mult_emb: int = 4,
        num_blocks: int = 3,
        attn_resolutions: Sequence[int] = (32, 16, 8),
        dropout: float = 0.10,
        label_dropout: float = 0,
    ) -> None:
        super().__init__()
        self.label_dropout = label_dropout
        emb_channels = model_channels * channel_mult_emb
        block_kwargs: dict[str, Any] = {
            "emb_channels": emb_channels, "channels_per_head": 64, "dropout": dropout
        }

        # Mapping.
        self.map_noise = PositionalEmbedding(model_channels)
        self.map_augment = Linear(augment_dim, model_channels, bias=False) if augment_dim else None
        self.map_layer0 = Linear(model_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)
        self.map_label = Linear(label_dim, emb_channels, bias=False) if label_dim else None

        # Encoder: every entry's output is a skip.
        self.enc = nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, 3)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block_kwargs)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, cout, attention=res in attn_resolutions, **block_kwargs
                )
        skip_channels = [_out_channels(block) for block in self.enc.values()]

        # Decoder.
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block_kwargs)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block_kwargs)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block_kwargs)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skip_channels.pop(), model_channels * mult
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, cout, attention=res in attn_resolutions, **block_kwargs
                )
        self.out_norm = GroupNorm(cout)
        self.out_conv = Conv2d(cout, out_channels, 3)
        self.skip_taps = _skip_taps(self.dec)

    def forward(
        self,
        x: torch.Tensor,
        noise_labels: torch.Tensor,
        class_labels: torch.Tensor | None,
        augment_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # Mapping: the class embedding joins after the second layer, before the SiLU.
        emb = self.map_noise(noise_labels)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = self.map_layer1(F.silu(self.map_layer0(emb)))
        if self.map_label is not None:
            labels = _required_labels(class_labels)
            if self.training and self.label_dropout:
                keep = torch.rand([x.shape[0], 1], device=x.device) >= self.label_dropout
                labels = labels * keep.to(labels.dtype)
            emb = emb + self.map_label(labels)
        emb = F.silu(emb)

        # Encoder.
        skips: list[torch.Tensor] = []
        for block in self.enc.values():
            x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
            skips.append(x)

        # Decoder: the tap before each concatenation is where skip-tuning scales the skip.
        taps = iter(self.skip_taps)
        for name, block in self.dec.items():
            if _consumes_skip(name):
                x = torch.cat([x, next(taps)(skips.pop())], dim=1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))


NETWORKS: dict[str, type[SongUNet] | type[DhariwalUNet]] = {
    "SongUNet": SongUNet, "DhariwalUNet": DhariwalUNet,
}


class _Precond(nn.Module, abc.ABC):
    """What the four preconditionings share: the wrapped U-Net ``model``, labels, fp16.

    ``forward(x, sigma, class_labels=None)`` = c_skip·x + c_out·F(c_in·x, c_noise), in
    float32 outside the network; the network runs in float16 when ``use_fp16`` and x is on
    CUDA. Subclasses give ``coefficients(sigma) -> (c_skip, c_out, c_in, c_noise)``.
    """

    output_channels_factor = 1      # iDDPM's network also predicts a variance: 2× channels
    model: SongUNet | DhariwalUNet
    sigma_min: float                # the σ range the preconditioning was trained on
    sigma_max: float

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int,
        use_fp16: bool,
        model_type: str,
        model_kwargs: dict,
    ) -> None:
        super().__init__()
        if model_type not in NETWORKS:
            raise ValueError(f"model_type {model_type!r}: use one of {', '.join(NETWORKS)}")
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.label_dim = label_dim
        self.use_fp16 = use_fp16
        self.model = NETWORKS[model_type](
            img_resolution=img_resolution,
            in_channels=img_channels,
            out_channels=img_channels * self.output_channels_factor,
            label_dim=label_dim,
            **model_kwargs,
        )

    @abc.abstractmethod
    def coefficients(self, sigma: torch.Tensor) -> tuple:
        """(c_skip, c_out, c_in, c_noise) at σ: each preconditioning's Table 1 row."""

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        augment_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x.to(torch.float32)
        sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        if self.label_dim == 0:
            class_labels = None
        elif class_labels is None:
            class_labels = torch.zeros([1, self.label_dim], device=x.device)
        else:
            class_labels = class_labels.to(torch.float32).reshape(-1, self.label_dim)
        dtype = torch.float16 if self.use_fp16 and x.device.type == "cuda" else torch.float32
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        f_x = self.model(
            (c_in * x).to(dtype), c_noise.flatten(), class_labels=class_labels,
            augment_labels=augment_labels,
        )
        return c_skip * x + c_out * f_x[:, : self.img_channels].to(torch.float32)


class EDMPrecond(_Precond):
    """EDM's preconditioning (Karras et al. 2022, Table 1), σ_data-scaled."""

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int = 0,
        use_fp16: bool = False,
        sigma_min: float = 0,
        sigma_max: float = float("inf"),
        sigma_data: float = 0.5,
        model_type: str = "DhariwalUNet",
        **model_kwargs: object,
    ) -> None:
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type,
                         model_kwargs)
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.sigma_data = sigma_data

    def coefficients(self, sigma: torch.Tensor) -> tuple:
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sd**2 + sigma**2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise


class VPPrecond(_Precond):
    """Variance-preserving preconditioning (Song et al. 2021, DDPM++ "VP")."""

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int = 0,
        use_fp16: bool = False,
        beta_d: float = 19.9,
        beta_min: float = 0.1,
        M: int = 1000,                  # EDM's recorded kwarg names, capitals included
        epsilon_t: float = 1e-5,
        model_type: str = "SongUNet",
        **model_kwargs: object,
    ) -> None:
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type,
                         model_kwargs)
        self.beta_d = beta_d
        self.beta_min = beta_min
        self.M = M
        self.epsilon_t = epsilon_t
        # Scalars on the CPU even while the network is laid out on the meta device (its
        # shapes checked against a snapshot's tensors before any memory is allocated).
        with torch.device("cpu"):
            self.sigma_min = float(self.sigma(epsilon_t))
            self.sigma_max = float(self.sigma(1))

    def sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        """σ(t) = √(exp(½β_d t² + β_min t) − 1)."""
        t = torch.as_tensor(t)
        return ((0.5 * self.beta_d * (t**2) + self.beta_min * t).exp() - 1).sqrt()

    def sigma_inv(self, sigma: torch.Tensor) -> torch.Tensor:
        """t(σ), the inverse of :meth:`sigma`."""
        sigma = torch.as_tensor(sigma)
        root = (self.beta_min**2 + 2 * self.beta_d * (1 + sigma**2).log()).sqrt()
        return (root - self.beta_min) / self.beta_d

    def coefficients(self, sigma: torch.Tensor) -> tuple:
        c_in = 1 / (sigma**2 + 1).sqrt()
        return 1, -sigma, c_in, (self.M - 1) * self.sigma_inv(sigma)


class VEPrecond(_Precond):
    """Variance-exploding preconditioning (Song et al. 2021, NCSN++ "VE")."""

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int = 0,
        use_fp16: bool = False,
        sigma_min: float = 0.02,
        sigma_max: float = 100,
        model_type: str = "SongUNet",
        **model_kwargs: object,
    ) -> None:
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type,
                         model_kwargs)
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max

    def coefficients(self, sigma: torch.Tensor) -> tuple:
        return 1, sigma, 1, (0.5 * sigma).log()


class iDDPMPrecond(_Precond):
    """Improved DDPM (Nichol & Dhariwal 2021): a discrete table ``u`` of M + 1 σ values;
    the network sees the index of the nearest one and also predicts a variance (ignored)."""

    output_channels_factor = 2
    u: torch.Tensor                 # the σ table, a buffer

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int = 0,
        use_fp16: bool = False,
        C_1: float = 0.001,
        C_2: float = 0.008,
        M: int = 1000,
        model_type: str = "DhariwalUNet",
        **model_kwargs: object,
    ) -> None:
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type,
                         model_kwargs)
        self.C_1 = C_1
        self.C_2 = C_2
        self.M = M
        self.register_buffer("u", self._sigma_table())
        self.sigma_min = float(self.u[M - 1])
        self.sigma_max = float(self.u[0])

    def _alpha_bar(self, j: torch.Tensor | int) -> torch.Tensor:
        """ᾱ at step j of the cosine schedule."""
        j = torch.as_tensor(j)
        return (0.5 * math.pi * j / self.M / (self.C_2 + 1)).sin() ** 2

    def _sigma_table(self) -> torch.Tensor:
        """u_M = 0 and u_{j−1} = √((u_j² + 1)/max(ᾱ_{j−1}/ᾱ_j, C_1) − 1)."""
        with torch.device("cpu"):      # a small table, never on the meta device (see VP)
            u = torch.zeros(self.M + 1)
            for j in range(self.M, 0, -1):
                ratio = (self._alpha_bar(j - 1) / self._alpha_bar(j)).clip(min=self.C_1)
                u[j - 1] = ((u[j] ** 2 + 1) / ratio - 1).sqrt()
        return u

    def sigma_index(self, sigma: torch.Tensor) -> torch.Tensor:
        """Index in ``u`` of the table σ nearest each σ (same shape as ``sigma``)."""
        flat = sigma.to(self.u.device).to(torch.float32).reshape(-1, 1)
        index = (flat - self.u.reshape(1, -1)).abs().argmin(dim=1)
        return index.reshape(sigma.shape).to(sigma.device)

    def coefficients(self, sigma: torch.Tensor) -> tuple:
        c_in = 1 / (sigma**2 + 1).sqrt()
        c_noise = self.M - 1 - self.sigma_index(sigma).to(torch.float32)
        return 1, -sigma, c_in, c_noise


PRECONDITIONERS: dict[str, type[_Precond]] = {
    "EDMPrecond": EDMPrecond,
    "VPPrecond": VPPrecond,
    "VEPrecond": VEPrecond,
    "iDDPMPrecond": iDDPMPrecond,
}
