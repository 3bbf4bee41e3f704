"""skiptune's EDM networks against EDM's own outputs, and every preset EDM ships."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skiptune.models import load_model
from skiptune.models.edm import (
    EDMPrecond,
    VEPrecond,
    VPPrecond,
    iDDPMPrecond,
    wrap_network,
)
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning
from tests.models.edm_helpers import FIXTURE_NAMES, fixture_path

TOLERANCE = 5e-5


def _excess(out: torch.Tensor, expected: torch.Tensor) -> float:
    """The largest error relative to 1 + |expected|: EDM's outputs reach ~60, where float32
    sums taken in another order (another CPU's kernels, another thread count) differ by a
    few 1e-5 absolute."""
    return ((out - expected).abs() / (1 + expected.abs())).max().item()


def _fixture(name: str) -> tuple:
    model = load_model(fixture_path(name), device="cpu")
    arrays = np.load(fixture_path(name).with_suffix(".npz"))
    tensors = {k: torch.from_numpy(arrays[k]) for k in arrays.files}
    condition = tensors["class_labels"] if model.conditioner is not None else None
    return model, tensors, condition


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_denoised_matches_edm(name: str) -> None:
    model, t, condition = _fixture(name)
    out = model.denoise(t["x"], t["sigma"], condition)
    assert _excess(out, t["denoised"]) <= TOLERANCE


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_skip_factors_act_where_edm_concatenates_each_skip(name: str) -> None:
    model, t, condition = _fixture(name)
    assert model.num_skips == len(t["factors"])
    with skip_tuning(model, t["factors"]):
        out = model.denoise(t["x"], t["sigma"], condition)
    assert _excess(out, t["denoised_rho"]) <= TOLERANCE
    # The factors matter: the tuned output is far from the untuned one.
    assert (t["denoised_rho"] - t["denoised"]).abs().max().item() > 100 * TOLERANCE


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_rho_one_is_bit_identical(name: str) -> None:
    model, t, condition = _fixture(name)
    plain = model.denoise(t["x"], t["sigma"], condition)
    with skip_tuning(model, TuningSchedule(rho_bottom=1.0, rho_top=1.0)):
        hooked = model.denoise(t["x"], t["sigma"], condition)
    assert torch.equal(plain, hooked)


# EDM's train.py presets (architecture part), at 16 channels instead of 128/192: the skip
# count depends on the layout alone. Full-size counts: benchmarks/edm_trial_speed.py.
DDPMPP = {"model_type": "SongUNet", "embedding_type": "positional", "encoder_type": "standard",
          "decoder_type": "standard", "channel_mult_noise": 1, "resample_filter": [1, 1],
          "model_channels": 16, "channel_mult": [2, 2, 2]}
NCSNPP = {"model_type": "SongUNet", "embedding_type": "fourier", "encoder_type": "residual",
          "decoder_type": "standard", "channel_mult_noise": 2, "resample_filter": [1, 3, 3, 1],
          "model_channels": 16, "channel_mult": [2, 2, 2]}
ADM = {"model_type": "DhariwalUNet", "model_channels": 16, "channel_mult": [1, 2, 3, 4]}
PRESETS = {
    # name: (preconditioner, resolution, label_dim, kwargs, skips)
    "cifar10-ddpmpp-vp": (VPPrecond, 32, 0, DDPMPP, 15),
    "cifar10-ddpmpp-edm-cond": (EDMPrecond, 32, 10, DDPMPP, 15),
    "cifar10-ncsnpp-ve": (VEPrecond, 32, 0, NCSNPP, 15),
    "ffhq64-ddpmpp": (EDMPrecond, 64, 0, {**DDPMPP, "channel_mult": [1, 2, 2, 2]}, 20),
    "afhqv2-64-ncsnpp": (VEPrecond, 64, 0, {**NCSNPP, "channel_mult": [1, 2, 2, 2]}, 20),
    "imagenet64-adm": (EDMPrecond, 64, 1000, ADM, 16),
    "imagenet64-adm-iddpm": (iDDPMPrecond, 64, 1000, ADM, 16),
    "skip-encoder-and-decoder": (
        EDMPrecond, 32, 0, {**NCSNPP, "encoder_type": "skip", "decoder_type": "skip"}, 15),
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_runs_and_lists_its_skips_bottom_to_top(preset: str) -> None:
    precond, resolution, label_dim, kwargs, skips = PRESETS[preset]
    torch.manual_seed(0)
    net = precond(img_resolution=resolution, img_channels=3, label_dim=label_dim,
                  augment_dim=9 if precond is EDMPrecond else 0, **kwargs)
    model = wrap_network(net)
    assert model.num_skips == skips
    x = torch.randn(2, 3, resolution, resolution)
    sigma = torch.tensor([0.5, 5.0])
    condition = model.condition_for([0, 1])
    plain = model.denoise(x, sigma, condition)
    assert plain.shape == x.shape and plain.dtype == torch.float32
    # Scaling only the deepest skip changes the output; ρ = 1 everywhere changes nothing.
    deepest = torch.ones(skips)
    deepest[0] = 0.0
    with skip_tuning(model, deepest):
        assert not torch.equal(model.denoise(x, sigma, condition), plain)
    with skip_tuning(model, torch.ones(skips)):
        assert torch.equal(model.denoise(x, sigma, condition), plain)


def test_sigma_ranges_follow_the_preconditioner() -> None:
    small = {"model_channels": 16, "channel_mult": [1], "num_blocks": 1, "attn_resolutions": []}
    edm = wrap_network(EDMPrecond(8, 3, model_type="SongUNet", **small))
    assert (edm.sigma_min, edm.sigma_max) == (0.002, 80.0)        # EDM generate.py's defaults
    ve = wrap_network(VEPrecond(8, 3, **small))
    assert (ve.sigma_min, ve.sigma_max) == (0.02, 100)
    vp = wrap_network(VPPrecond(8, 3, **small))
    # σ(ε_t = 1e-5) = 0.001, computed in float32 as EDM does: exp(1e-6) − 1 rounds.
    assert vp.sigma_min == pytest.approx(0.001, rel=0.03)
    assert vp.sigma_max == pytest.approx(152.17, rel=1e-3)         # σ(1)
    iddpm = wrap_network(iDDPMPrecond(8, 3, model_type="SongUNet", **small))
    assert iddpm.discrete_sigmas is not None and iddpm.discrete_sigmas.shape == (1000,)
    assert torch.all(iddpm.discrete_sigmas[1:] > iddpm.discrete_sigmas[:-1])
    assert iddpm.sigma_min == pytest.approx(float(iddpm.discrete_sigmas[0]))
    assert iddpm.sigma_max == pytest.approx(float(iddpm.discrete_sigmas[-1]))
    assert iddpm.net.model.dec["8x8_aux_conv"].out_channels == 6    # 2C: mean and variance


def test_iddpm_sees_the_index_of_the_nearest_table_sigma() -> None:
    net = iDDPMPrecond(8, 3, model_type="SongUNet", model_channels=16, channel_mult=[1],
                       num_blocks=1, attn_resolutions=[])
    table = net.u
    sigma = torch.stack([table[999], table[500] * 1.0001, table[0]])
    assert net.sigma_index(sigma).tolist() == [999, 500, 0]
    _, _, _, c_noise = net.coefficients(sigma.reshape(-1, 1, 1, 1))
    assert c_noise.flatten().tolist() == [0.0, 499.0, 999.0]


def test_use_fp16_runs_float32_off_cuda() -> None:
    net = EDMPrecond(8, 3, use_fp16=True, model_type="SongUNet", model_channels=16,
                     channel_mult=[1], num_blocks=1, attn_resolutions=[])
    seen = []
    net.model.register_forward_hook(lambda _m, args, _out: seen.append(args[0].dtype))
    net(torch.randn(1, 3, 8, 8), torch.tensor([1.0]))
    assert seen == [torch.float32]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_use_fp16_runs_the_network_in_float16_on_cuda() -> None:
    net = EDMPrecond(8, 3, use_fp16=True, model_type="SongUNet", model_channels=16,
                     channel_mult=[1], num_blocks=1, attn_resolutions=[]).cuda()
    seen = []
    net.model.register_forward_hook(lambda _m, args, _out: seen.append(args[0].dtype))
    out = net(torch.randn(1, 3, 8, 8, device="cuda"), torch.tensor([1.0], device="cuda"))
    assert seen == [torch.float16] and out.dtype == torch.float32
