"""An exported σ list in plain diffusers: EulerDiscreteScheduler(sigmas=...) on a tiny
UNet2DModel gives skiptune's own Euler samples on the same searched grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from skiptune.models import diffusers_unet
from skiptune.sampling import grid_sigmas, initial_noise, sample, steps_for_nfe
from skiptune.steps import StepGrid
from tests.models.test_diffusers import TWO_LEVELS, save_folder

diffusers = pytest.importorskip("diffusers")


def diffusers_euler(unet: torch.nn.Module, scheduler_folder: Path, exported: dict,
                    noise: torch.Tensor) -> torch.Tensor:
    """The README's recipe, as a diffusers user runs it with an export file's ``sigmas``."""
    scheduler = diffusers.EulerDiscreteScheduler.from_pretrained(scheduler_folder)
    scheduler.set_timesteps(sigmas=exported["sigmas"])
    # σ_max·noise, as EDM and skiptune start (init_noise_sigma is √(σ_max² + 1) with a DDPM
    # config's "leading" spacing: a 3e-5 relative difference at σ_max = 126).
    x = noise * exported["sigmas"][0]
    for t in scheduler.timesteps:
        with torch.no_grad():
            eps = unet(scheduler.scale_model_input(x, t), t).sample
        x = scheduler.step(eps, t, x).prev_sample
    return x


def test_export_sigmas_in_a_diffusers_scheduler_match_skiptune(tmp_path: Path) -> None:
    unet_folder = save_folder(tmp_path, TWO_LEVELS)
    model = diffusers_unet.load(unet_folder, device="cpu")
    # A searched grid, off EDM's defaults at both ends and in its exponent.
    grid = StepGrid(schedule_exponent=3.5, sigma_min=4 * model.sigma_min,
                    sigma_max=0.8 * model.sigma_max)
    nfe = 6
    sigmas = grid_sigmas(steps_for_nfe("euler", nfe), grid).tolist()
    exported = json.loads(json.dumps({"sigmas": sigmas}))   # as the export file holds it
    assert exported["sigmas"][-1] == 0 and len(exported["sigmas"]) == nfe + 1
    noise = initial_noise(2, model.noise_shape, seed=0)

    ours = sample(model, noise, sampler="euler", nfe=nfe, steps=grid)
    unet = diffusers.UNet2DModel.from_pretrained(unet_folder).eval()
    theirs = diffusers_euler(unet, tmp_path / "scheduler", exported, noise)

    # The same steps and ε-net, but float32 arithmetic in another order (diffusers scales x
    # and takes the step in its own expressions) and the timestep of each σ interpolated in
    # NumPy float64 where skiptune interpolates in torch: measured 4e-7 of the samples' scale
    # (a few float32 roundings; an untrained net's samples reach a few hundred), so 1e-5 of
    # it holds with margin; a wrong σ or timestep moves them by far more (the default grid's
    # below; starting at init_noise_sigma instead of σ_max alone gives 3e-5).
    assert torch.isfinite(theirs).all()
    difference = (ours - theirs).abs().max().item()
    print(f"max |skiptune − diffusers| = {difference:.2e}, scale {ours.abs().max():.2f}")
    assert difference < 1e-5 * max(1.0, ours.abs().max().item())
    # And the default grid would not pass: the comparison can tell the grids apart.
    default = sample(model, noise, sampler="euler", nfe=nfe)
    assert (default - theirs).abs().max().item() > 100 * difference
