"""The contract every model family meets, run against each family (as Optuna's storage suite is).

A new adapter joins by adding a loader to ``FAMILIES``: ρ = 1 is exact, the sites are ordered
bottom → top, every site is live, hooks are removed after an error, and per-sample factors
equal one schedule per run. Each family is fed what it samples: noise of its ``noise_shape``
(a latent model's latents) and, for a conditional model, each sample's condition drawn from
its seed (``condition_for``; None for an unconditional one).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # before diffusers is first imported: nothing reaches the Hub

from skiptune.models import load_model
from skiptune.models._base import Condition, SkipSite, TunableModel
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning
from tests.conftest import DEMO_CHECKPOINT


def _native(_root: Path) -> TunableModel:
    return load_model(DEMO_CHECKPOINT, device="cpu")


def _custom(_root: Path) -> TunableModel:
    return load_model("tests.models.additive_unet:adapter", device="cpu")


def _diffusers(root: Path) -> TunableModel:
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    net = diffusers.UNet2DModel(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=8,
    )
    net.save_pretrained(root / "unet")
    diffusers.DDPMScheduler(num_train_timesteps=1000).save_pretrained(root / "scheduler")
    return load_model(root / "unet", device="cpu")


def _stable_diffusion(root: Path) -> TunableModel:
    pytest.importorskip("diffusers")
    pytest.importorskip("safetensors")
    from tests.models.tiny_sd import save_embeddings, save_pipeline

    embeddings = save_embeddings(root / "prompts.safetensors")
    return load_model(save_pipeline(root / "pipeline"), device="cpu",
                      conditioning={"embeddings": str(embeddings), "guidance_scale": 3.0})


def _latent_consistency(root: Path) -> TunableModel:
    diffusers = pytest.importorskip("diffusers")
    pytest.importorskip("safetensors")
    from tests.models.tiny_sd import SD_UNET, save_embeddings, save_pipeline

    # An LCM-distilled U-Net: the guidance scale is an input, LCM's boundary condition applies.
    folder = save_pipeline(root / "pipeline", {**SD_UNET, "time_cond_proj_dim": 8},
                           scheduler=diffusers.LCMScheduler(timestep_scaling=0.01))
    embeddings = save_embeddings(root / "prompts.safetensors", negative=False)
    return load_model(folder, device="cpu", conditioning={"embeddings": str(embeddings)})


def _consistency(root: Path) -> TunableModel:
    pytest.importorskip("diffusers")
    from tests.models.tiny_cm import save_cm_pipeline

    save_cm_pipeline(root / "pipeline", num_classes=10)
    return load_model(root / "pipeline", device="cpu")


def _edm(root: Path) -> TunableModel:
    from tests.models.edm_helpers import fixture_path

    snapshot = shutil.copy(fixture_path("ddpmpp-edm-uncond"), root / "snapshot.pkl")
    return load_model(snapshot, device="cpu")


FAMILIES: dict[str, Callable[[Path], TunableModel]] = {
    "native": _native,
    "edm": _edm,
    "custom": _custom,
    "diffusers": _diffusers,
    "consistency": _consistency,
    "stable-diffusion": _stable_diffusion,
    "latent-consistency": _latent_consistency,
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TunableModel:
    return FAMILIES[request.param](tmp_path_factory.mktemp(request.param))


Batch = tuple[torch.Tensor, torch.Tensor, Condition | None]


@pytest.fixture
def batch(model: TunableModel) -> Batch:
    """Three noisy samples at σ = 0.1, 1, 10, with their conditions (seeds 0, 1, 2)."""
    generator = torch.Generator().manual_seed(7)
    y = torch.rand(3, *model.noise_shape, generator=generator) * 2 - 1
    sigma = torch.tensor([0.1, 1.0, 10.0])
    x = y + sigma.view(-1, 1, 1, 1) * torch.randn(y.shape, generator=generator)
    return x, sigma, model.condition_for([0, 1, 2])


def _guidance_gain(condition: Condition | None) -> float:
    """How much classifier-free guidance, uncond + g·(cond − uncond), can amplify the
    rounding of each half (a batch of another size rounds the last bits otherwise): 1 + 2g."""
    if isinstance(condition, dict) and "guidance_scale" in condition:
        return 1.0 + 2.0 * float(condition["guidance_scale"].max())
    return 1.0


def _row(condition: Condition | None, j: int) -> Condition | None:
    """Sample j's condition alone."""
    if isinstance(condition, dict):
        return {name: value[j : j + 1] for name, value in condition.items()}
    return None if condition is None else condition[j : j + 1]


def _skip_of(site: SkipSite, args: tuple, output: Any) -> torch.Tensor:
    """The skip tensor a site scales, read from its module's inputs or output."""
    if site.input_index is None:
        return output
    value = args[site.input_index]
    return value if site.tuple_index is None else value[site.tuple_index]


def _hook_counts(model: TunableModel) -> list[tuple[int, int]]:
    return [(len(m._forward_pre_hooks), len(m._forward_hooks)) for m in model.net.modules()]


def _recorded_skips(model: TunableModel, batch: Batch) -> list[torch.Tensor]:
    """The skip tensor each site receives in one forward pass, in site order."""
    seen: dict[int, torch.Tensor] = {}

    def recorder(k: int, site: SkipSite) -> Callable[..., None]:
        def record(_module: Any, args: tuple, output: Any) -> None:
            seen.setdefault(k, _skip_of(site, args, output))

        return record

    handles = [
        site.module.register_forward_hook(recorder(k, site))
        for k, site in enumerate(model.skip_sites)
    ]
    try:
        model.denoise(*batch)
    finally:
        for handle in handles:
            handle.remove()
    assert sorted(seen) == list(range(model.num_skips)), "some sites never saw their skip"
    return [seen[k] for k in range(model.num_skips)]


def test_identity_schedule_is_bit_identical(model: TunableModel, batch: Batch) -> None:
    plain = model.denoise(*batch)
    with skip_tuning(model, TuningSchedule(rho_bottom=1.0, rho_top=1.0)):
        tuned = model.denoise(*batch)
    assert torch.equal(plain, tuned)


def test_sites_are_ordered_from_the_deepest_to_the_shallowest(
    model: TunableModel, batch: Batch
) -> None:
    areas = [skip.shape[-2] * skip.shape[-1] for skip in _recorded_skips(model, batch)]
    assert areas == sorted(areas), f"skip resolutions bottom → top must not shrink: {areas}"
    assert areas[0] < areas[-1]
    assert areas[-1] == model.noise_shape[1] * model.noise_shape[2]


def test_every_site_is_live(model: TunableModel, batch: Batch) -> None:
    # A site pointed at the wrong module or input would make its ρ do nothing: zeroing each
    # site alone must change the output.
    plain = model.denoise(*batch)
    for k in range(model.num_skips):
        factors = torch.ones(model.num_skips)
        factors[k] = 0.0
        with skip_tuning(model, factors):
            assert not torch.equal(model.denoise(*batch), plain), f"site {k} has no effect"


def test_hooks_are_removed_after_an_error(model: TunableModel, batch: Batch) -> None:
    before, plain = _hook_counts(model), model.denoise(*batch)
    with pytest.raises(RuntimeError, match="inside"), skip_tuning(model, TuningSchedule(0.5)):
        raise RuntimeError("inside the block")
    assert _hook_counts(model) == before
    assert torch.equal(model.denoise(*batch), plain)


def test_per_sample_factors_equal_one_run_per_schedule(model: TunableModel, batch: Batch) -> None:
    x, sigma, condition = batch
    schedules = [TuningSchedule(0.5), TuningSchedule(1.0), TuningSchedule(0.8, rho_top=0.9)]
    with skip_tuning(model, schedules):
        together = model.denoise(x, sigma, condition)
    for j, schedule in enumerate(schedules):
        with skip_tuning(model, schedule):
            alone = model.denoise(x[j : j + 1], sigma[j : j + 1], _row(condition, j))
        # One batch against one image each: the convolutions pick other kernels for another
        # batch size, and float32 sums in another order differ by up to ~1e-4 relative.
        tolerance = 1e-4 * _guidance_gain(condition)
        torch.testing.assert_close(together[j : j + 1], alone, rtol=tolerance, atol=tolerance)
