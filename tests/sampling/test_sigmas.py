"""σ grids: EDM's Karras grid, DDIM's trailing pick of the training timesteps and LCM's."""

from __future__ import annotations

import math

import pytest
import torch

from skiptune.errors import ConfigurationError
from skiptune.sampling import ddim_sigmas, karras_sigmas, lcm_sigmas


def vp_linear_sigmas(num_train: int = 1000) -> torch.Tensor:
    """Ascending σ = √((1 − ᾱ)/ᾱ) of DDPM's linear β schedule (Ho et al. 2020)."""
    betas = torch.linspace(1e-4, 0.02, num_train, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


def test_karras_grid_runs_from_sigma_max_to_sigma_min_then_zero() -> None:
    sigmas = karras_sigmas(18, sigma_min=0.002, sigma_max=80.0)
    assert sigmas.dtype == torch.float32
    assert sigmas.shape == (19,)
    assert sigmas[0].item() == pytest.approx(80.0, rel=1e-6)
    assert sigmas[-2].item() == pytest.approx(0.002, rel=1e-5)
    assert sigmas[-1].item() == 0.0
    assert bool((sigmas[1:] < sigmas[:-1]).all())


def test_karras_grid_follows_edm_equation_5() -> None:
    sigmas = karras_sigmas(5, sigma_min=0.002, sigma_max=80.0, schedule_exponent=7.0,
                           dtype=torch.float64)
    ramp = 2 / 4
    expected = (80.0 ** (1 / 7) + ramp * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    assert sigmas[2].item() == pytest.approx(expected, rel=1e-12)
    # Exponent 1 spaces σ evenly.
    linear = karras_sigmas(5, sigma_min=1.0, sigma_max=5.0, schedule_exponent=1.0)
    assert linear.tolist() == pytest.approx([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])


def test_a_single_step_goes_straight_from_sigma_max_to_zero() -> None:
    assert karras_sigmas(1, sigma_min=0.002, sigma_max=80.0).tolist() == [80.0, 0.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_steps": 0}, "num_steps"),
        ({"num_steps": 2.5}, "num_steps"),
        ({"sigma_min": 0.0}, "sigma_min"),
        ({"sigma_min": 90.0}, "sigma_min"),
        ({"sigma_max": math.inf}, "sigma_max"),
        ({"schedule_exponent": 0.0}, "schedule_exponent"),
    ],
)
def test_karras_grid_rejects_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    arguments = {"num_steps": 10, "sigma_min": 0.002, "sigma_max": 80.0, **kwargs}
    with pytest.raises(ConfigurationError, match=match):
        karras_sigmas(**arguments)  # type: ignore[arg-type]


def test_ddim_grid_uses_trailing_timesteps_of_the_training_table() -> None:
    table = vp_linear_sigmas()
    sigmas = ddim_sigmas(10, table, dtype=torch.float64)
    timesteps = [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert sigmas.tolist() == [*table[timesteps].tolist(), 0.0]
    # Uneven ratios round as diffusers' np.round(np.arange(T, 0, −T/n)) − 1 does.
    three = ddim_sigmas(3, table, dtype=torch.float64)
    assert three[:-1].tolist() == table[[999, 666, 332]].tolist()


def test_ddim_grid_with_every_timestep_is_the_whole_table_reversed() -> None:
    table = vp_linear_sigmas(50)
    sigmas = ddim_sigmas(50, table, dtype=torch.float64)
    assert sigmas.tolist() == [*table.flip(0).tolist(), 0.0]
    assert sigmas.device == table.device


def test_ddim_grid_rejects_bad_tables_and_too_many_steps() -> None:
    table = vp_linear_sigmas(100)
    with pytest.raises(ConfigurationError, match="num_steps ≤ 100"):
        ddim_sigmas(101, table)
    with pytest.raises(ConfigurationError, match="ascending"):
        ddim_sigmas(10, table.flip(0))
    with pytest.raises(ConfigurationError, match="1-D"):
        ddim_sigmas(10, table.reshape(10, 10))


def test_lcm_grid_takes_lcms_four_timesteps_of_fifty() -> None:
    table = vp_linear_sigmas()
    sigmas = lcm_sigmas(4, table, dtype=torch.float64)
    assert sigmas.tolist() == [*table[[999, 759, 499, 259]].tolist(), 0.0]
    assert lcm_sigmas(1, table, dtype=torch.float64).tolist() == [table[999].item(), 0.0]


@pytest.mark.parametrize(("num_train", "original_steps"), [(1000, 50), (1000, 30), (999, 50)])
def test_lcm_grid_is_the_lcm_schedulers_at_every_step_count(
    num_train: int, original_steps: int
) -> None:
    scheduling = pytest.importorskip("diffusers.schedulers.scheduling_lcm")
    scheduler = scheduling.LCMScheduler(num_train_timesteps=num_train,
                                        original_inference_steps=original_steps)
    table = vp_linear_sigmas(num_train)
    for steps in range(1, original_steps + 1):
        scheduler.set_timesteps(steps)
        sigmas = lcm_sigmas(steps, table, original_steps=original_steps, dtype=torch.float64)
        assert sigmas[:-1].tolist() == table[scheduler.timesteps].tolist(), steps


def test_lcm_grid_rejects_more_steps_than_it_was_distilled_on() -> None:
    table = vp_linear_sigmas()
    with pytest.raises(ConfigurationError, match="at most the 50 timesteps"):
        lcm_sigmas(51, table)
    with pytest.raises(ConfigurationError, match="original_steps must be"):
        lcm_sigmas(4, table, original_steps=0)
    with pytest.raises(ConfigurationError, match="ascending"):
        lcm_sigmas(4, table.flip(0))
