"""Sampling on a searched σ grid: exact NFE, the sampler's own grid at EDM's numbers, refusals."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
import torch

from skiptune.errors import ConfigurationError
from skiptune.sampling import SAMPLERS, SeededStepNoise, grid_sigmas, sample, sigma_grid
from skiptune.sampling.solvers import TIMESTEP_GRIDS
from skiptune.steps import StepGrid


class CountingModel:
    """A SamplingModel whose denoiser shrinks x toward 0 and counts its calls."""

    sigma_min, sigma_max = 0.002, 80.0
    discrete_sigmas = None
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.calls = 0

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, condition: Any = None) -> torch.Tensor:
        self.calls += 1
        return x / (1 + sigma.view(-1, 1, 1, 1) ** 2)


KARRAS = sorted(name for name, spec in SAMPLERS.items() if spec.grid not in TIMESTEP_GRIDS)


@pytest.mark.parametrize("name", KARRAS)
@pytest.mark.parametrize("nfe", [5, 9, 15])
def test_every_grid_keeps_the_nfe_exact(name: str, nfe: int) -> None:
    for grid in (StepGrid(1.0, 0.002, 80.0), StepGrid(15.0, 0.05, 20.0)):
        model = CountingModel()
        images = sample(model, torch.randn(2, 1, 4, 4), sampler=name, nfe=nfe, steps=grid,
                        step_noise=SeededStepNoise(2, (1, 4, 4), seed=0))
        assert model.calls == nfe and torch.isfinite(images).all()


def test_edms_numbers_give_the_samplers_own_grid_bit_for_bit() -> None:
    model = CountingModel()
    own = sigma_grid(model, sampler="heun", nfe=9)
    searched = sigma_grid(model, sampler="heun", nfe=9, steps=StepGrid(7.0, 0.002, 80.0))
    assert torch.equal(own, searched)
    other = sigma_grid(model, sampler="heun", nfe=9, steps=StepGrid(3.0, 0.01, 40.0))
    values = other.tolist()
    assert values[0] == pytest.approx(40.0) and values[-2] == pytest.approx(0.01)
    assert values[-1] == 0 and all(a > b for a, b in pairwise(values))
    assert torch.equal(other, grid_sigmas(5, StepGrid(3.0, 0.01, 40.0)))


def test_a_grid_outside_the_model_or_on_ddim_is_refused() -> None:
    model = CountingModel()
    with pytest.raises(ConfigurationError, match="outside the model's σ range"):
        sigma_grid(model, sampler="heun", nfe=9, steps=StepGrid(7.0, 0.001, 80.0))
    for sampler in ("ddim", "euler_ancestral_discrete", "lcm"):
        with pytest.raises(ConfigurationError,
                           match=f"{sampler} walks the model's training timesteps"):
            sigma_grid(model, sampler=sampler, nfe=9, steps=StepGrid(7.0, 0.002, 80.0))
