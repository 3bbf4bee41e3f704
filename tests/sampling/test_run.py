"""``sample`` and ``sigma_grid`` on a small model whose data is unit Gaussian (exact denoiser)."""

from __future__ import annotations

import math

import pytest
import torch

from skiptune.errors import ConfigurationError, NonFiniteSampleError
from skiptune.sampling import (
    SAMPLERS,
    SeededStepNoise,
    initial_noise,
    karras_sigmas,
    lcm_sigmas,
    sample,
    sigma_grid,
    steps_for_nfe,
)
from skiptune.sampling.solvers import TIMESTEP_GRIDS

SHAPE = (1, 4, 4)


class GaussianDataModel:
    """Stands in for a TunableModel: data y ~ N(0, I), so D(x; σ) = x/(1 + σ²) exactly."""

    sigma_min = 0.002
    sigma_max = 80.0
    device = torch.device("cpu")

    def __init__(self, discrete_sigmas: torch.Tensor | None = None) -> None:
        self.discrete_sigmas = discrete_sigmas
        self.calls = 0
        self.grad_enabled: set[bool] = set()
        self.sigmas_seen: list[float] = []

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.grad_enabled.add(torch.is_grad_enabled())
        self.sigmas_seen.append(sigma[0].item())
        assert sigma.shape == (x.shape[0],)
        return x / (1 + sigma[:, None, None, None] ** 2)


KARRAS_SAMPLERS = sorted(
    name for name, spec in SAMPLERS.items() if spec.grid not in TIMESTEP_GRIDS)
TIMESTEP_SAMPLERS = sorted(
    name for name, spec in SAMPLERS.items() if spec.grid in TIMESTEP_GRIDS)


@pytest.mark.parametrize("sampler", KARRAS_SAMPLERS)
@pytest.mark.parametrize("nfe", [1, 5, 9])
def test_sample_returns_images_with_exactly_nfe_calls(sampler: str, nfe: int) -> None:
    model = GaussianDataModel()
    noise = initial_noise(6, SHAPE, seed=0)
    images = sample(model, noise, sampler=sampler, nfe=nfe,
                    step_noise=SeededStepNoise(6, SHAPE, seed=0))
    assert images.shape == noise.shape
    assert model.calls == nfe
    assert model.grad_enabled == {False}
    assert model.sigmas_seen[0] == pytest.approx(80.0)


def test_sample_solves_the_flow_from_sigma_max() -> None:
    # For N(0, I) data the flow is x(σ) = x(σ_max)·√((1 + σ²)/(1 + σ_max²)); the last step
    # returns D(x(σ_min); σ_min). The noise must be scaled by σ_max for this to hold.
    model = GaussianDataModel()
    noise = initial_noise(8, SHAPE, seed=5)
    images = sample(model, noise, sampler="heun", nfe=99)
    sigma_min, sigma_max = model.sigma_min, model.sigma_max
    scale = sigma_max / math.sqrt((1 + sigma_max**2) * (1 + sigma_min**2))
    torch.testing.assert_close(images, noise * scale, rtol=0.02, atol=1e-3)


def test_sigma_grid_is_the_karras_grid_over_the_model_range() -> None:
    grid = sigma_grid(GaussianDataModel(), sampler="heun", nfe=9, schedule_exponent=5.0)
    expected = karras_sigmas(5, sigma_min=0.002, sigma_max=80.0, schedule_exponent=5.0)
    assert torch.equal(grid, expected)


def test_ddim_walks_the_model_training_timesteps() -> None:
    table = torch.linspace(0.01, 80.0, 1000)
    model = GaussianDataModel(discrete_sigmas=table)
    grid = sigma_grid(model, sampler="ddim", nfe=10)
    assert grid.shape == (11,)
    assert grid[0].item() == table[-1].item()
    images = sample(model, initial_noise(3, SHAPE, seed=0), sampler="ddim", nfe=10)
    assert images.shape == (3, *SHAPE)
    assert model.calls == 10
    assert model.sigmas_seen == grid[:-1].tolist()


@pytest.mark.parametrize("sampler", TIMESTEP_SAMPLERS)
@pytest.mark.parametrize("nfe", [1, 4, 7])
def test_timestep_samplers_call_exactly_nfe_times_at_their_grids_sigma(
    sampler: str, nfe: int
) -> None:
    table = torch.linspace(0.01, 80.0, 1000)
    model = GaussianDataModel(discrete_sigmas=table)
    grid = sigma_grid(model, sampler=sampler, nfe=nfe)
    images = sample(model, initial_noise(3, SHAPE, seed=0), sampler=sampler, nfe=nfe,
                    step_noise=SeededStepNoise(3, SHAPE, seed=0))
    assert images.shape == (3, *SHAPE) and model.calls == nfe
    assert model.sigmas_seen == grid[:-1].tolist() and grid[-1].item() == 0
    assert grid[0].item() == table[-1].item()       # all start at the last timestep, 999


def test_lcm_steps_among_the_models_own_original_inference_steps() -> None:
    table = torch.linspace(0.01, 80.0, 1000)
    model = GaussianDataModel(discrete_sigmas=table)
    assert torch.equal(sigma_grid(model, sampler="lcm", nfe=4), lcm_sigmas(4, table))
    model.original_inference_steps = 25      # type: ignore[attr-defined]
    assert torch.equal(sigma_grid(model, sampler="lcm", nfe=4),
                       lcm_sigmas(4, table, original_steps=25))
    with pytest.raises(ConfigurationError, match="at most the 25 timesteps"):
        sigma_grid(model, sampler="lcm", nfe=26)


def test_ddim_on_a_model_without_discrete_timesteps_says_what_to_use() -> None:
    with pytest.raises(ConfigurationError, match="discrete_sigmas is None") as info:
        sample(GaussianDataModel(), initial_noise(2, SHAPE, seed=0), sampler="ddim", nfe=10)
    assert "choose one of euler, heun" in str(info.value)


def test_a_budget_the_sampler_cannot_meet_fails_before_any_call() -> None:
    model = GaussianDataModel()
    with pytest.raises(ConfigurationError, match="nearest budgets it can meet are 7 and 9"):
        sample(model, initial_noise(2, SHAPE, seed=0), sampler="heun", nfe=8)
    with pytest.raises(ConfigurationError, match="unknown sampler"):
        sample(model, initial_noise(2, SHAPE, seed=0), sampler="dpm++", nfe=8)
    assert model.calls == 0


def test_non_finite_images_raise() -> None:
    class Diverging(GaussianDataModel):
        def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return torch.full_like(x, math.nan)

    with pytest.raises(NonFiniteSampleError, match="heun at 3 NFE"):
        sample(Diverging(), initial_noise(2, SHAPE, seed=0), sampler="heun", nfe=3)


def test_callback_reports_each_step() -> None:
    steps: list[int] = []
    sample(
        GaussianDataModel(),
        initial_noise(2, SHAPE, seed=0),
        sampler="unipc",
        nfe=7,
        callback=lambda i, sigma, x, denoised: steps.append(i),
    )
    assert steps == list(range(steps_for_nfe("unipc", 7)))
