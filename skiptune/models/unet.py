"""skiptune's own architecture: an EDM/DDPM++-style U-Net with EDM preconditioning.

Follows the layout of EDM's ``SongUNet`` (Karras et al. 2022, ``training/networks.py``):
GroupNorm-SiLU-conv residual blocks with a 1×1 shortcut when the channel count or the
resolution changes, optional self-attention at chosen resolutions, and a decoder that
concatenates the skips it pops. Every popped skip passes through its own ``nn.Identity``
tap (``skip_taps``) just before ``torch.cat``, which is where skip-tuning scales it.
The default config is EDM's CIFAR-10 DDPM++ size; the demonstration model is a 1–2M
parameter instance of the same code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from skiptune.errors import CheckpointError

__all__ = [
    "ConsistencyEDMUNet","EDMUNet", "PreconditionedEDMUNet", "UNetConfig"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture hyper-parameters; the defaults are EDM's CIFAR-10 DDPM++ (≈56 M parameters)."""

    img_resolution: int = 32
    in_channels: int = 3
    out_channels: int = 3
    model_channels: int = 128  # channels at the highest resolution, before channel_mult
    channel_mult: tuple[int, ...] = (2, 2, 2)  # per resolution level, highest first
    channel_mult_emb: int = 4  # noise-embedding width = model_channels * this
    num_blocks: int = 4  # residual blocks per resolution in the encoder
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.10
    embedding_type: str = "positional"  # "positional" (DDPM++) or "fourier" (NCSN++)
    num_groups: int = 32  # GroupNorm groups, capped by the channel count
    attn_heads_channels: int = 64  # channels per attention head
    sigma_data: float = 0.5
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        object.__setattr__(self, "attn_resolutions", tuple(int(r) for r in self.attn_resolutions))
        if self.embedding_type not in ("positional", "fourier"):
            raise CheckpointError(
                f"unknown embedding_type {self.embedding_type!r}; use 'positional' or 'fourier'"
            )
        if self.img_resolution % (2 ** (len(self.channel_mult) - 1)):
            raise CheckpointError(
                f"img_resolution {self.img_resolution} must be divisible by "
                f"2^{len(self.channel_mult) - 1} for {len(self.channel_mult)} resolution levels"
            )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channel_mult"] = list(self.channel_mult)
        data["attn_resolutions"] = list(self.attn_resolutions)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> UNetConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise CheckpointError(f"unknown U-Net config keys {sorted(unknown)}")
        return cls(**data)


def _group_norm(channels: int, num_groups: int) -> nn.GroupNorm:
    groups = min(num_groups, channels)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6)


class PositionalEmbedding(nn.Module):
    """Transformer sinusoidal embedding of the noise level (DDPM++)."""

    def __init__(self, num_channels: int, max_positions: int = 10000) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.max_positions = max_positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Computed in float32 (positions need its precision), handed on in the net's dtype.
        dtype = x.dtype
        freqs = torch.arange(self.num_channels // 2, dtype=torch.float32, device=x.device)
        freqs = (1 / self.max_positions) ** (freqs / (self.num_channels // 2 - 1))
        x = x.float().outer(freqs)
        return torch.cat([x.cos(), x.sin()], dim=1).to(dtype)


def _zero_init(layer: nn.Conv2d | nn.Linear) -> None:
    """Zero a layer's weight and bias: a residual branch that starts as the identity."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class FourierEmbedding(nn.Module):
    """Random Fourier features of the noise level (NCSN++)."""

    freqs: torch.Tensor

    def __init__(self, num_channels: int, scale: float = 16.0) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().outer(2 * math.pi * self.freqs)
        return torch.cat([x.cos(), x.sin()], dim=1)


class UNetBlock(nn.Module):
    """Residual block: GroupNorm-SiLU-conv twice, noise-conditioned scale/shift, 1×1 shortcut."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        *,
        up: bool = False,
        down: bool = False,
        attention: bool = False,
        dropout: float = 0.0,
        num_groups: int = 32,
        attn_heads_channels: int = 64,
        skip_scale: float = math.sqrt(0.5),
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.up, self.down = up, down
        self.skip_scale = skip_scale
        self.norm0 = _group_norm(in_channels, num_groups)
        self.conv0 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.affine = nn.Linear(emb_channels, out_channels)
        self.norm1 = _group_norm(out_channels, num_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        _zero_init(self.conv1)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels or up or down
            else None
        )
        self.num_heads = max(out_channels // attn_heads_channels, 1) if attention else 0
        if attention:
            self.norm2 = _group_norm(out_channels, num_groups)
            self.qkv = nn.Conv2d(out_channels, out_channels * 3, 1)
            self.proj = nn.Conv2d(out_channels, out_channels, 1)
            _zero_init(self.proj)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        orig = x
        x = self.conv0(self._resample(F.silu(self.norm0(x))))
        x = F.silu(self.norm1(x + self.affine(emb).unsqueeze(2).unsqueeze(3)))
        x = self.conv1(self.dropout(x))
        shortcut = self._resample(orig)
        if self.shortcut is not None:
            shortcut = self.shortcut(shortcut)
        x = (x + shortcut) * self.skip_scale
        if self.num_heads:
            x = (x + self._attention(x)) * self.skip_scale
        return x

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = (
            self.qkv(self.norm2(x))
            .reshape(b * self.num_heads, 3 * c // self.num_heads, -1)
            .chunk(3, dim=1)
        )
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        )
        return self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class EDMUNet(nn.Module):
    """DDPM++ U-Net F(x, c_noise) whose decoder concatenates skips through ``skip_taps``."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        emb_channels = c.model_channels * c.channel_mult_emb
        block_kwargs: dict[str, Any] = {
            "emb_channels": emb_channels,
            "dropout": c.dropout,
            "num_groups": c.num_groups,
            "attn_heads_channels": c.attn_heads_channels,
        }

        # Mapping: noise level → embedding.
        noise_channels = c.model_channels
        self.map_noise = (
            PositionalEmbedding(noise_channels)
            if c.embedding_type == "positional"
            else FourierEmbedding(noise_channels)
        )
        self.map_layer0 = nn.Linear(noise_channels, emb_channels)
        self.map_layer1 = nn.Linear(emb_channels, emb_channels)

        # Encoder: every block's output is a skip.
        self.enc = nn.ModuleDict()
        cout = c.in_channels
        skip_channels = []
        for level, mult in enumerate(c.channel_mult):
            res = c.img_resolution >> level
            if level == 0:
                cin, cout = cout, c.model_channels
                self.enc[f"{res}x{res}_conv"] = nn.Conv2d(cin, cout, 3, padding=1)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block_kwargs)
            skip_channels.append(cout)
            for idx in range(c.num_blocks):
                cin, cout = cout, c.model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, cout, attention=res in c.attn_resolutions, **block_kwargs
                )
                skip_channels.append(cout)

        # Decoder: num_blocks + 1 blocks per level, each consuming one skip.
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            res = c.img_resolution >> level
            if level == len(c.channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block_kwargs)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block_kwargs)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block_kwargs)
            for idx in range(c.num_blocks + 1):
                cin, cout = cout + skip_channels.pop(), c.model_channels * mult
                attention = idx == c.num_blocks and res in c.attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, cout, attention=attention, **block_kwargs
                )
        self.out_norm = _group_norm(cout, c.num_groups)
        self.out_conv = nn.Conv2d(cout, c.out_channels, 3, padding=1)
        _zero_init(self.out_conv)

        # One tap per consumed skip, in consumption order: index 0 is the deepest skip.
        num_skips = sum(1 for name in self.dec if "_block" in name)
        self.skip_taps = nn.ModuleList(nn.Identity() for _ in range(num_skips))

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor) -> torch.Tensor:
        emb = self.map_noise(noise_labels)
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(*emb.shape)  # swap sin/cos
        emb = F.silu(self.map_layer0(emb))
        emb = F.silu(self.map_layer1(emb))

        skips = []
        for name, block in self.enc.items():
            x = block(x) if name.endswith("_conv") else block(x, emb)
            skips.append(x)

        taps = iter(self.skip_taps)
        for name, block in self.dec.items():
            if "_block" in name:
                # Where the decoder consumes the skip: the tap is what skip-tuning scales.
                x = torch.cat([x, next(taps)(skips.pop())], dim=1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))


class PreconditionedEDMUNet(nn.Module):
    """skiptune's :class:`EDMUNet` under EDM preconditioning (Karras et al. 2022, Table 1).

    Not NVlabs' ``EDMPrecond`` (that one is :class:`skiptune.models.edm.EDMPrecond`, which
    rebuilds EDM's own snapshots); this is the net of skiptune's checkpoints.

    D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ)).
    """

    def __init__(self, unet: EDMUNet, sigma_data: float = 0.5) -> None:
        super().__init__()
        self.unet = unet
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = sigma.to(x.dtype).reshape(-1, 1, 1, 1)
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sd**2 + sigma**2).sqrt()
        c_noise = sigma.log().flatten() / 4
        return c_skip * x + c_out * self.unet(c_in * x, c_noise)


class ConsistencyEDMUNet(PreconditionedEDMUNet):
    """skiptune's :class:`EDMUNet` as a consistency model f(x; σ) (Song et al. 2023, App. C).

    The same network under the boundary-condition scalings, so that f(x; σ_min) = x:
    c_skip = σ_d²/((σ − σ_min)² + σ_d²), c_out = (σ − σ_min)·σ_d/√(σ² + σ_d²); c_in and
    c_noise as EDM's. A student distilled from a :class:`PreconditionedEDMUNet` teacher
    starts from the teacher's weights, which these scalings leave nearly unchanged above σ_min.
    """

    def __init__(self, unet: EDMUNet, sigma_data: float = 0.5, sigma_min: float = 0.002) -> None:
        super().__init__(unet, sigma_data=sigma_data)
        self.sigma_min = sigma_min

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = sigma.to(x.dtype).reshape(-1, 1, 1, 1)
        sd = self.sigma_data
        c_skip = sd**2 / ((sigma - self.sigma_min) ** 2 + sd**2)
        c_out = (sigma - self.sigma_min) * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sd**2 + sigma**2).sqrt()
        c_noise = sigma.log().flatten() / 4
        return c_skip * x + c_out * self.unet(c_in * x, c_noise)
