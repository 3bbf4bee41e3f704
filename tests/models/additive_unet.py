"""A tiny U-Net with ADDITIVE skips and its skiptune adapter.

It doubles as the worked example of ``docs/custom_models.md``: keep the two in sync.
Load it with ``load_model("tests.models.additive_unet:adapter")``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skiptune.models.custom import CustomModel, CustomSkipSite

SIGMA_DATA = 0.5


class Up(nn.Module):
    """Decoder block: adds the skip, convolves, and doubles the resolution unless it is the last."""

    def __init__(self, in_channels: int, out_channels: int, *, upsample: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.upsample = upsample

    def forward(self, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h = h + skip  # the skip is consumed here: skiptune scales `skip` (input 1)
        h = self.conv(F.silu(h))
        if self.upsample:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        return h


class AdditiveUNet(nn.Module):
    """Three resolutions (8×8, 4×4, 2×2 for 8×8 images), one additive skip per resolution."""

    def __init__(self, channels: int = 1, width: int = 8) -> None:
        super().__init__()
        self.embed = nn.Linear(1, width)  # noise level → a per-channel bias
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.enc1 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.enc2 = nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1)
        self.mid = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
        self.dec2 = Up(2 * width, 2 * width, upsample=True)
        self.dec1 = Up(2 * width, width, upsample=True)
        self.dec0 = Up(width, width, upsample=False)
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        h0 = self.stem(x) + self.embed(c_noise[:, None])[:, :, None, None]
        h1 = F.silu(self.enc1(h0))
        h2 = F.silu(self.enc2(h1))
        h = self.mid(h2)
        h = self.dec2(h, h2)  # deepest skip: bottom, site 0
        h = self.dec1(h, h1)
        h = self.dec0(h, h0)  # shallowest skip: top, last site
        return self.out(F.silu(h))


def edm_denoise(net: nn.Module, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """EDM preconditioning (Karras et al. 2022, Table 1): D(x; σ) = c_skip·x + c_out·F(c_in·x)."""
    s = sigma.to(x.dtype).view(-1, 1, 1, 1)
    c_skip = SIGMA_DATA**2 / (s**2 + SIGMA_DATA**2)
    c_out = s * SIGMA_DATA / (s**2 + SIGMA_DATA**2).sqrt()
    c_in = 1 / (s**2 + SIGMA_DATA**2).sqrt()
    c_noise = sigma.to(x.dtype).log() / 4
    return c_skip * x + c_out * net(c_in * x, c_noise)


def adapter() -> CustomModel:
    """The skiptune adapter: the net, its denoiser and its skip sites, bottom → top."""
    # A real adapter loads trained weights here, e.g.
    # net.load_state_dict(torch.load("my_unet.pt", weights_only=True)); the test model is
    # seeded instead, without disturbing the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = AdditiveUNet()
    return CustomModel(
        net=net,
        denoise=edm_denoise,
        skip_sites=[
            CustomSkipSite("dec2", input_index=1),  # bottom: consumes h2 (2×2)
            CustomSkipSite("dec1", input_index=1),
            CustomSkipSite("dec0", input_index=1),  # top: consumes h0 (8×8)
        ],
        image_shape=(1, 8, 8),
        sigma_min=0.002,
        sigma_max=80.0,
        sigma_data=SIGMA_DATA,
    )
