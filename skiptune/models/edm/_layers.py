"""Building blocks of EDM's networks (Karras et al. 2022), written for skiptune.

Parameter and buffer names follow NVlabs EDM's ``training/networks.py`` so that a snapshot's
state dict loads with ``strict=True``; the arithmetic follows the same operation order, so
outputs match EDM's to float rounding. Weights are cast to the activations' dtype in every
forward, as EDM does, so a float16 forward (``use_fp16`` on CUDA) keeps float32 weights.
Initialisation is plain (weights are loaded, or only timed): it does not follow EDM's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# NCSN++'s random Fourier features: skiptune's own U-Net has the same layer (buffer "freqs").
from skiptune.models.unet import FourierEmbedding

__all__ = [
    "Conv2d",
    "FourierEmbedding",
    "GroupNorm",
    "Linear",
    "PositionalEmbedding",
    "UNetBlock",
]


def _uniform(shape: Sequence[int], fan_in: int, gain: float = 1.0) -> torch.Tensor:
    """Uniform weights with variance gain/fan_in (enough for timing and tests)."""
    bound = gain * math.sqrt(3.0 / max(fan_in, 1))
    return (torch.rand(*shape) * 2 - 1) * bound


class Linear(nn.Module):
    """y = x·Wᵀ + b, W [out, in]; the bias is added after the product, as EDM does."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(_uniform([out_features, in_features], in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x @ self.weight.to(x.dtype).t()
        if self.bias is not None:
            x = x.add_(self.bias.to(x.dtype))
        return x


def _resample_kernel(taps: Sequence[int]) -> torch.Tensor:
    """The separable FIR filter of a 1-D tap list as a normalised [1, 1, k, k] kernel."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    return f.ger(f).unsqueeze(0).unsqueeze(1) / f.sum().square()


class Conv2d(nn.Module):
    """Convolution (``kernel`` 0: none) with optional 2× FIR up/downsampling before it.

    ``fused_resample`` merges the resampling into the convolution's padding/stride (NCSN++'s
    residual encoder); ``resample_filter`` is a buffer only when resampling.
    """

    resample_filter: torch.Tensor | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        bias: bool = True,
        up: bool = False,
        down: bool = False,
        resample_filter: Sequence[int] = (1, 1),
        fused_resample: bool = False,
    ) -> None:
        if up and down:
            raise ValueError("a Conv2d resamples up or down, not both")
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.up, self.down = up, down
        self.fused_resample = fused_resample
        fan_in = in_channels * kernel * kernel
        shape = [out_channels, in_channels, kernel, kernel]
        self.weight = nn.Parameter(_uniform(shape, fan_in)) if kernel else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if kernel and bias else None
        self.register_buffer(
            "resample_filter", _resample_kernel(resample_filter) if up or down else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.to(x.dtype)
        f = None if self.resample_filter is None else self.resample_filter.to(x.dtype)
        w_pad = 0 if w is None else w.shape[-1] // 2
        f_pad = 0 if f is None else (f.shape[-1] - 1) // 2
        if (self.up or self.down) and f is None:
            raise RuntimeError("a resampling Conv2d lost its resample_filter buffer")
        if self.fused_resample and self.up and w is not None and f is not None:
            # The later EDM text's padding (the first release padded w_pad + f_pad here and
            # none in the convolution); no EDM preset upsamples fused, so both compute alike.
            up_kernel = f.mul(4).tile([self.in_channels, 1, 1, 1])
            x = F.conv_transpose2d(
                x, up_kernel, groups=self.in_channels, stride=2, padding=max(f_pad - w_pad, 0)
            )
            x = F.conv2d(x, w, padding=max(w_pad - f_pad, 0))
        elif self.fused_resample and self.down and w is not None and f is not None:
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            down_kernel = f.tile([self.out_channels, 1, 1, 1])
            x = F.conv2d(x, down_kernel, groups=self.out_channels, stride=2)
        else:
            if self.up and f is not None:
                up_kernel = f.mul(4).tile([self.in_channels, 1, 1, 1])
                x = F.conv_transpose2d(
                    x, up_kernel, groups=self.in_channels, stride=2, padding=f_pad
                )
            if self.down and f is not None:
                down_kernel = f.tile([self.in_channels, 1, 1, 1])
                x = F.conv2d(x, down_kernel, groups=self.in_channels, stride=2, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        if self.bias is not None:
            x = x.add_(self.bias.to(x.dtype).reshape(1, -1, 1, 1))
        return x


class GroupNorm(nn.Module):
    """GroupNorm with at most ``num_groups`` groups of at least ``min_channels_per_group``."""

    def __init__(
        self,
        num_channels: int,
        num_groups: int = 32,
        min_channels_per_group: int = 4,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(
            x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps
        )


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(qᵀk/√c)-weighted v, q/k/v [n, c, pixels]; the weights computed in float32."""
    scaled_k = k / math.sqrt(k.shape[1])
    weights = torch.einsum("ncq,nck->nqk", q.to(torch.float32), scaled_k.to(torch.float32))
    weights = weights.softmax(dim=2).to(q.dtype)
    return torch.einsum("nqk,nck->ncq", weights, v)


class UNetBlock(nn.Module):
    """EDM's residual block, the union of DDPM++, NCSN++ and ADM: GroupNorm-SiLU-conv twice,
    noise embedding as a shift (or scale and shift), a shortcut, optional self-attention."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        up: bool = False,
        down: bool = False,
        attention: bool = False,
        num_heads: int | None = None,
        channels_per_head: int = 64,
        dropout: float = 0.0,
        skip_scale: float = 1.0,
        eps: float = 1e-5,
        resample_filter: Sequence[int] = (1, 1),
        resample_proj: bool = False,
        adaptive_scale: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        if not attention:
            self.num_heads = 0
        elif num_heads is None:
            self.num_heads = out_channels // channels_per_head
        else:
            self.num_heads = num_heads
        self.dropout = dropout
        self.skip_scale = skip_scale
        self.adaptive_scale = adaptive_scale
        resample: dict[str, Any] = {"up": up, "down": down, "resample_filter": resample_filter}

        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, 3, **resample)
        affine_width = out_channels * (2 if adaptive_scale else 1)
        self.affine = Linear(emb_channels, affine_width)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, 3)
        self.skip = None
        if out_channels != in_channels or up or down:
            # A 1×1 projection when the channels change (or when asked); else resampling only.
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel, **resample)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, 1)
            self.proj = Conv2d(out_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb).unsqueeze(2).unsqueeze(3).to(x.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(chunks=2, dim=1)
            x = F.silu(torch.addcmul(shift, self.norm1(x), scale + 1))
        else:
            x = F.silu(self.norm1(x.add_(params)))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = x.add_(orig if self.skip is None else self.skip(orig))
        x = x * self.skip_scale
        if self.num_heads:
            heads = self.qkv(self.norm2(x)).reshape(
                x.shape[0] * self.num_heads, x.shape[1] // self.num_heads, 3, -1
            )
            q, k, v = heads.unbind(2)
            x = self.proj(_attention(q, k, v).reshape(*x.shape)).add_(x)
            x = x * self.skip_scale
        return x


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of the noise label (DDPM++, ADM); ``endpoint`` spans the last
    frequency to exactly 1/max_positions."""

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False):
        super().__init__()
        self.num_channels = num_channels
        self.max_positions = max_positions
        self.endpoint = endpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        freqs = torch.arange(start=0, end=half, dtype=torch.float32, device=x.device)
        freqs = freqs / (half - (1 if self.endpoint else 0))
        freqs = (1 / self.max_positions) ** freqs
        x = x.ger(freqs.to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)
