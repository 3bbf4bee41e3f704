"""The diffusers UNet2DModel adapter, on tiny randomly initialised nets saved to tmp folders."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import os
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

# Set before diffusers (and huggingface_hub) is first imported: nothing may reach the Hub.
os.environ["HF_HUB_OFFLINE"] = "1"

from skiptune.errors import CheckpointError
from skiptune.models import _diffusers_common, diffusers_unet
from skiptune.models._base import TunableModel, fingerprint_state_dict
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning

TWO_LEVELS: dict[str, Any] = {
    "sample_size": 16,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (16, 32),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
    "norm_num_groups": 8,
    "attention_head_dim": 8,
}
THREE_LEVELS: dict[str, Any] = {
    "sample_size": 16,
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": (8, 16, 16),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "norm_num_groups": 4,
    "attention_head_dim": 4,
}

# Score-SDE-style blocks that also carry an image-space skip_sample (not a U-Net skip).
SKIP_BLOCKS: dict[str, Any] = {
    "sample_size": 16,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (32, 32, 32),
    "layers_per_block": 1,
    "down_block_types": ("SkipDownBlock2D", "AttnSkipDownBlock2D", "SkipDownBlock2D"),
    "up_block_types": ("SkipUpBlock2D", "AttnSkipUpBlock2D", "SkipUpBlock2D"),
    "norm_num_groups": 8,
    "attention_head_dim": 8,
}
CONFIGS = pytest.mark.parametrize(
    "config", [TWO_LEVELS, THREE_LEVELS, SKIP_BLOCKS], ids=["two_levels", "three_levels", "skip"]
)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # These nets are tiny: on two cores shared with other jobs, torch's intra-op threads only
    # oversubscribe them (this file took 45 s with two threads, 13 s with one).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def diffusers() -> types.ModuleType:
    return pytest.importorskip("diffusers")


def save_folder(
    root: Path,
    config: dict[str, Any],
    *,
    layout: str = "pipeline",
    seed: int = 0,
    **scheduler_kwargs: Any,
) -> Path:
    """Save a random UNet2DModel and a DDPMScheduler; return the folder to pass to load_model."""
    import diffusers

    torch.manual_seed(seed)
    net = diffusers.UNet2DModel(**config)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, **scheduler_kwargs)
    if layout == "pipeline":  # as DDPMPipeline.save_pretrained lays it out
        net.save_pretrained(root / "unet")
        scheduler.save_pretrained(root / "scheduler")
        return root / "unet"
    net.save_pretrained(root)
    scheduler.save_pretrained(root)
    return root


@pytest.fixture
def load_model(monkeypatch: pytest.MonkeyPatch) -> Callable[..., TunableModel]:
    """skiptune's load_model; stands in for skiptune.models.native until that module exists."""
    if importlib.util.find_spec("skiptune.models.native") is None:
        monkeypatch.setitem(
            sys.modules, "skiptune.models.native", types.ModuleType("skiptune.models.native")
        )
    from skiptune.models._loading import load_model

    return load_model


@pytest.fixture(scope="module")
def folder(diffusers: types.ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_folder(tmp_path_factory.mktemp("two_levels"), TWO_LEVELS)


@pytest.fixture(scope="module")
def model(folder: Path) -> TunableModel:
    return diffusers_unet.load(folder, device="cpu")


@pytest.fixture
def batch(model: TunableModel) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    y = torch.rand(3, *model.image_shape, generator=generator) * 2 - 1
    sigma = torch.tensor([0.05, 1.0, 30.0])
    return y + sigma.view(-1, 1, 1, 1) * torch.randn(y.shape, generator=generator), sigma


def expected_skip_count(config: dict[str, Any]) -> int:
    """1 (conv_in's output) + per down block: one per layer, one more if it downsamples."""
    levels = len(config["block_out_channels"])
    return 1 + sum(config["layers_per_block"] + (i < levels - 1) for i in range(levels))


# --- finding and loading the folder ---------------------------------------------------------


def test_load_model_offline(load_model, folder: Path) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    model = load_model(folder, device="cpu")
    assert model.family == "diffusers"
    assert model.source == str(folder)
    assert model.image_shape == (3, 16, 16)
    assert model.sigma_data == 0.5
    assert not model.net.training
    sigmas = model.discrete_sigmas
    assert sigmas is not None and sigmas.shape == (1000,) and sigmas.dtype == torch.float32
    assert bool((sigmas.diff() > 0).all())
    assert (model.sigma_min, model.sigma_max) == (float(sigmas[0]), float(sigmas[-1]))
    assert model.fingerprint == fingerprint_state_dict(model.net.state_dict())
    assert model.metadata["prediction_type"] == "epsilon"
    # The pipeline root and the unet folder itself name the same model.
    assert load_model(folder.parent, device="cpu").fingerprint == model.fingerprint


def test_scheduler_config_in_the_same_folder(diffusers, tmp_path: Path) -> None:
    folder = save_folder(tmp_path, TWO_LEVELS, layout="flat", seed=1)
    model = diffusers_unet.load(folder, device="cpu")
    assert model.num_skips == 4


def test_folder_without_diffusers_installed(tmp_path: Path, monkeypatch, load_model) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` now fails
    assert diffusers_unet.is_diffusers_folder(tmp_path)
    with pytest.raises(CheckpointError, match=r"diffusers is not installed; run: pip install "):
        load_model(tmp_path, device="cpu")
    with pytest.raises(CheckpointError, match=r"pip install '\.\[diffusers\]' in a clone"):
        diffusers_unet.load(tmp_path, device="cpu")


def test_is_diffusers_folder(tmp_path: Path) -> None:
    assert not diffusers_unet.is_diffusers_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    assert not diffusers_unet.is_diffusers_folder(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    assert not diffusers_unet.is_diffusers_folder(tmp_path)
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    assert diffusers_unet.is_diffusers_folder(tmp_path)  # a pipeline folder
    assert diffusers_unet.is_diffusers_folder(tmp_path / "unet")
    assert not diffusers_unet.is_diffusers_folder(tmp_path / "unet" / "config.json")


def test_missing_scheduler_config(diffusers, tmp_path: Path) -> None:
    torch.manual_seed(0)
    diffusers.UNet2DModel(**TWO_LEVELS).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"no scheduler config .*scheduler.save_pretrained"):
        diffusers_unet.load(tmp_path, device="cpu")


@pytest.mark.parametrize(
    ("scheduler_config", "message"),
    [
        ({"prediction_type": "flow"}, r"prediction_type 'flow'; skiptune supports"),
        ({"beta_schedule": "sigmoid"}, r"beta_schedule 'sigmoid' is not supported"),
        # A score-SDE VE scheduler has σ but no betas: not a DDPM-family model.
        ({"_class_name": "ScoreSdeVeScheduler", "sigma_max": 1348.0}, r"no beta_schedule"),
    ],
)
def test_unsupported_scheduler(diffusers, tmp_path: Path, scheduler_config, message) -> None:
    folder = save_folder(tmp_path, TWO_LEVELS)
    path = folder.parent / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    if "_class_name" in scheduler_config:  # replace it whole
        config = {}
    path.write_text(json.dumps({**config, **scheduler_config}))
    with pytest.raises(CheckpointError, match=message):
        diffusers_unet.load(folder, device="cpu")


# --- skip sites ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "count"),
    [(TWO_LEVELS, 4), (THREE_LEVELS, 9), (SKIP_BLOCKS, 6)],
    ids=["two_levels", "three_levels", "skip"],
)
def test_skip_count(diffusers, tmp_path: Path, config: dict[str, Any], count: int) -> None:
    model = diffusers_unet.load(save_folder(tmp_path, config), device="cpu")
    assert model.num_skips == expected_skip_count(config) == count
    assert model.image_shape == (config["in_channels"], 16, 16)


@CONFIGS
def test_sites_are_ordered_bottom_to_top_as_the_decoder_consumes_them(
    diffusers, tmp_path: Path, config: dict[str, Any]
) -> None:
    """Site k's tensor is the skip that the k-th decoder resnet concatenates, deepest first."""
    model = diffusers_unet.load(save_folder(tmp_path, config), device="cpu")
    x = torch.randn(2, *model.image_shape, generator=torch.Generator().manual_seed(0))
    tuples: dict[int, tuple] = {}
    calls: list[tuple[str, torch.Tensor]] = []
    handles = []
    for i, block in enumerate(model.net.up_blocks):
        handles.append(
            block.register_forward_pre_hook(lambda _m, args, i=i: tuples.__setitem__(i, args[1]))
        )
        for m, resnet in enumerate(block.resnets):
            name = f"up_blocks.{i}.resnets.{m}"
            handles.append(
                resnet.register_forward_pre_hook(
                    lambda _m, args, name=name: calls.append((name, args[0]))
                )
            )
    try:
        model.denoise(x, torch.tensor([0.5, 4.0]))
    finally:
        for handle in handles:
            handle.remove()

    assert [name for name, _ in calls] == [site.name for site in model.skip_sites]
    resolutions = []
    for site, (_, resnet_input) in zip(model.skip_sites, calls, strict=True):
        block_index = list(model.net.up_blocks).index(site.module)
        skip = tuples[block_index][site.tuple_index]
        # The resnet sees cat([h, skip]): the skip is its trailing channels.
        assert torch.equal(resnet_input[:, -skip.shape[1] :], skip)
        resolutions.append(skip.shape[-1])
    assert resolutions == sorted(resolutions)
    levels = len(config["block_out_channels"])
    assert resolutions[0] == 16 // 2 ** (levels - 1)  # the deepest skip: lowest resolution
    assert resolutions[-1] == 16  # conv_in's output: full resolution


def test_zeroing_only_the_deepest_site(model: TunableModel, batch) -> None:
    x, sigma = batch
    factors = torch.ones(x.shape[0], model.num_skips)
    factors[:, 0] = 0.0
    seen: list[torch.Tensor] = []
    first_resnet = model.net.up_blocks[0].resnets[0]
    handle = first_resnet.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        untuned = model.denoise(x, sigma)
        with skip_tuning(model, factors):
            tuned = model.denoise(x, sigma)
    finally:
        handle.remove()
    assert not torch.allclose(tuned, untuned)
    skip_channels = TWO_LEVELS["block_out_channels"][-1]
    assert seen[0][:, -skip_channels:].abs().sum() > 0
    assert torch.equal(seen[1][:, -skip_channels:], torch.zeros_like(seen[1][:, -skip_channels:]))
    assert torch.equal(seen[1][:, :-skip_channels], seen[0][:, :-skip_channels])


def test_identity_schedule_reproduces_untuned_output_bit_for_bit(model, batch) -> None:
    x, sigma = batch
    untuned = model.denoise(x, sigma)
    with skip_tuning(model, TuningSchedule.identity()):
        tuned = model.denoise(x, sigma)
    assert torch.equal(tuned, untuned)
    assert all(not site.module._forward_pre_hooks for site in model.skip_sites)


def test_rho_below_one_changes_the_output(model, batch) -> None:
    x, sigma = batch
    untuned = model.denoise(x, sigma)
    with skip_tuning(model, TuningSchedule(rho_bottom=0.6)):
        tuned = model.denoise(x, sigma)
    assert not torch.allclose(tuned, untuned)
    assert torch.equal(model.denoise(x, sigma), untuned)


@pytest.mark.parametrize("window", [False, True], ids=["no-window", "sigma-window"])
def test_doc_hooks_apply_an_export_to_a_unet2dmodel_as_skiptune_does(
    diffusers: types.ModuleType, folder: Path, window: bool
) -> None:
    """docs/stable_diffusion.md's plain-diffusers hooks, as written, on a UNet2DModel (which
    passes its skips positionally, where UNet2DConditionModel names them): the samples are
    skiptune's own under that schedule. tests/models/test_sd.py runs them on the other class."""
    from skiptune.sampling import initial_noise, sample, sigma_grid
    from tests.models.test_sd import _doc_hooks_snippet

    model = diffusers_unet.load(folder, device="cpu")
    grid = sigma_grid(model, sampler="euler", nfe=6)
    bounds = ({"sigma_lo": float((grid[3] * grid[4]).sqrt()),
               "sigma_hi": float((grid[1] * grid[2]).sqrt())} if window else {})
    schedule = TuningSchedule(rho_bottom=0.4, rho_top=0.9, shape="cosine", **bounds)
    factors = schedule.factors(model.num_skips)
    best = {"schedule": schedule.to_dict(),
            "rho_factors": {s.name: f for s, f in zip(model.skip_sites, factors, strict=True)}}
    noise = initial_noise(2, model.noise_shape, seed=0)
    with skip_tuning(model, schedule):
        ours = sample(model, noise, sampler="euler", nfe=6)
    theirs = diffusers_unet.load(folder, device="cpu")
    pipe = types.SimpleNamespace(unet=theirs.net, scheduler=diffusers.DDPMScheduler
                                 .from_pretrained(folder.parent, subfolder="scheduler"))
    exec(_doc_hooks_snippet(), {"best": best, "pipe": pipe})
    assert torch.equal(sample(theirs, noise, sampler="euler", nfe=6), ours)
    assert not torch.equal(ours, sample(model, noise, sampler="euler", nfe=6))


# --- the σ-space denoiser --------------------------------------------------------------------


@pytest.mark.parametrize("schedule", _diffusers_common.BETA_SCHEDULES)
def test_sigma_table_matches_the_scheduler(diffusers, schedule: str) -> None:
    scheduler = diffusers.DDPMScheduler(beta_schedule=schedule, beta_end=0.012)
    sigmas = _diffusers_common.discrete_sigmas_from_scheduler_config(scheduler.config)
    alphas_cumprod = scheduler.alphas_cumprod.double()
    expected = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
    # diffusers computes in float32; ᾱ near 1 loses digits there, so compare loosely.
    torch.testing.assert_close(sigmas, expected, rtol=2e-3, atol=0)


def test_sigma_table_from_trained_betas_and_bad_schedules() -> None:
    betas = [0.001 * (i + 1) for i in range(10)]
    sigmas = _diffusers_common.discrete_sigmas_from_scheduler_config({"trained_betas": betas})
    assert sigmas.shape == (10,)
    assert float(sigmas[0]) == pytest.approx(math.sqrt(0.001 / 0.999))
    for config, message in [
        ({"beta_schedule": "sigmoid"}, "beta_schedule 'sigmoid' is not supported"),
        ({"_class_name": "ScoreSdeVeScheduler"}, "no beta_schedule"),
        ({"beta_schedule": "linear", "rescale_betas_zero_snr": True}, "rescale_betas_zero_snr"),
        ({"beta_schedule": "linear", "beta_start": 0.0}, "beta_start is 0.0, expected a number"),
    ]:
        with pytest.raises(CheckpointError, match=message):
            _diffusers_common.discrete_sigmas_from_scheduler_config(config)


def test_sigma_to_timestep_recovers_the_training_timesteps(model: TunableModel) -> None:
    log_sigmas = model.discrete_sigmas.double().log()
    steps = _diffusers_common.sigma_to_timestep(model.discrete_sigmas.double(), log_sigmas)
    torch.testing.assert_close(steps, torch.arange(1000, dtype=torch.float64), rtol=0, atol=1e-9)
    # Between two entries t moves linearly in log σ; outside the table it is clamped.
    middle = (log_sigmas[10] + log_sigmas[11]).div(2).exp()
    edges = torch.tensor([0.0, 1e-6, 1e6], dtype=torch.float64)
    middle_t = _diffusers_common.sigma_to_timestep(middle[None], log_sigmas)
    assert float(middle_t) == pytest.approx(10.5)
    assert _diffusers_common.sigma_to_timestep(edges, log_sigmas).tolist() == [0.0, 0.0, 999.0]


def test_the_net_is_called_at_the_training_timestep_of_each_sigma(model: TunableModel) -> None:
    steps = torch.tensor([0, 1, 17, 500, 998, 999])
    sigma = model.discrete_sigmas[steps]
    seen: list[torch.Tensor] = []
    handle = model.net.time_proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        model.denoise(torch.zeros(len(steps), *model.image_shape), sigma)
    finally:
        handle.remove()
    torch.testing.assert_close(seen[0], steps.float(), rtol=0, atol=1e-3)


def test_epsilon_denoiser_is_x_minus_sigma_eps(model: TunableModel, batch) -> None:
    x, _ = batch
    steps = torch.tensor([3, 250, 900])
    sigma = model.discrete_sigmas[steps]
    s = sigma.view(-1, 1, 1, 1)
    with torch.no_grad():
        eps = model.net(x / (s**2 + 1).sqrt(), steps.float()).sample
    torch.testing.assert_close(model.denoise(x, sigma), x - s * eps, rtol=1e-5, atol=1e-5)


def test_prediction_conversions_recover_the_clean_image() -> None:
    generator = torch.Generator().manual_seed(5)
    y = torch.rand(4, 3, 8, 8, generator=generator) * 2 - 1
    n = torch.randn(y.shape, generator=generator)
    sigma = torch.tensor([0.01, 0.7, 5.0, 120.0], dtype=torch.float64)
    y, n = y.double(), n.double()
    s = sigma.view(-1, 1, 1, 1)
    x = y + s * n  # σ-space
    alpha = 1 / (1 + s**2).sqrt()  # the VP model saw alpha·x = alpha·y + (σ·alpha)·n
    v = alpha * n - s * alpha * y
    for output, kind in [(n, "epsilon"), (v, "v_prediction"), (y, "sample")]:
        recovered = _diffusers_common.x0_from_prediction(output, x, sigma, kind)
        torch.testing.assert_close(recovered, y, rtol=0, atol=1e-9)


def test_v_prediction_model(diffusers, tmp_path: Path, batch) -> None:
    folder = save_folder(tmp_path, TWO_LEVELS, prediction_type="v_prediction")
    model = diffusers_unet.load(folder, device="cpu")
    assert model.metadata["prediction_type"] == "v_prediction"
    x, _ = batch
    steps = torch.tensor([3, 250, 900])
    sigma = model.discrete_sigmas[steps]
    s = sigma.view(-1, 1, 1, 1)
    alpha = 1 / (s**2 + 1).sqrt()
    with torch.no_grad():
        v = model.net(alpha * x, steps.float()).sample
    expected = alpha * (alpha * x) - s * alpha * v
    torch.testing.assert_close(model.denoise(x, sigma), expected, rtol=1e-5, atol=1e-5)


def test_few_step_euler_sampling_gives_finite_images(model: TunableModel) -> None:
    table = model.discrete_sigmas
    sigmas = torch.cat([table[[999, 600, 250, 50, 0]], table.new_zeros(1)])
    x = torch.randn(2, *model.image_shape, generator=torch.Generator().manual_seed(0))
    x = x * sigmas[0]
    with skip_tuning(model, TuningSchedule(rho_bottom=0.7)):
        for sigma, sigma_next in itertools.pairwise(sigmas):
            derivative = (x - model.denoise(x, sigma)) / sigma  # Euler step in σ (EDM eq. 3)
            x = x + derivative * (sigma_next - sigma)
    assert x.shape == (2, *model.image_shape)
    assert bool(torch.isfinite(x).all())


def test_learned_time_embedding_and_learned_variance(diffusers, tmp_path: Path) -> None:
    config = {
        **TWO_LEVELS,
        "out_channels": 6,
        "time_embedding_type": "learned",
        "num_train_timesteps": 1000,
    }
    folder = save_folder(tmp_path, config, variance_type="learned_range")
    model = diffusers_unet.load(folder, device="cpu")
    steps = torch.tensor([0, 400, 999])
    seen: list[torch.Tensor] = []
    handle = model.net.time_proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        # Between two table entries an nn.Embedding timestep is rounded to the nearest one.
        x0 = model.denoise(torch.zeros(3, 3, 16, 16), model.discrete_sigmas[steps] * 1.0001)
    finally:
        handle.remove()
    assert x0.shape == (3, 3, 16, 16)
    assert seen[0].dtype == torch.long and seen[0].tolist() == steps.tolist()


# --- FreeU on UNet2DModel -------------------------------------------------------------------

# Only UpBlock2D: diffusers' AttnUpBlock2D has no FreeU code to compare with.
PLAIN_UP_BLOCKS: dict[str, Any] = {
    **THREE_LEVELS,
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownBlock2D",) * 3,
    "up_block_types": ("UpBlock2D",) * 3,
}


def test_freeu_matches_diffusers_apply_freeu_on_unet2dmodel(diffusers, tmp_path: Path) -> None:
    """UNet2DModel has no enable_freeu; its UpBlock2D runs diffusers' FreeU code once given
    resolution_idx and the four attributes, which is the ground truth here."""
    from skiptune.freeu import FreeU

    model = diffusers_unet.load(save_folder(tmp_path, PLAIN_UP_BLOCKS), device="cpu")
    assert [s.name for s in model.freeu_stages] == ["up_blocks.0", "up_blocks.1"]
    # The probe found that UNet2DModel hands its skips over positionally (input 1).
    assert {(s.input_index, s.input_name) for s in model.skip_sites} == {(1, None)}
    x = torch.randn(2, *model.image_shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10.0, 700.0])
    values = FreeU(b1=1.4, b2=1.6, s1=0.9, s2=0.2)
    with torch.no_grad():
        plain = model.net(x, t, return_dict=False)[0]
        with skip_tuning(model, TuningSchedule.identity(), freeu=values):
            ours = model.net(x, t, return_dict=False)[0]
        for i, block in enumerate(model.net.up_blocks):
            block.resolution_idx = i
            for name, value in values.to_dict().items():
                setattr(block, name, value)
        reference = model.net(x, t, return_dict=False)[0]
    assert (ours - reference).abs().max().item() <= 1e-6
    assert (ours - plain).abs().max().item() > 1e-3
