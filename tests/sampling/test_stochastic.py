"""The stochastic samplers: seeded step noise, exact NFE, batch independence and convergence.

Data y ~ N(0, s²·I) has the exact denoiser D(x; σ) = x·s²/(s² + σ²) and the exact
consistency function f(x, σ) = x·√((s² + ε²)/(s² + σ²)) (the probability-flow ODE from σ to
ε), so a correct sampler's images have variance s² (s² + ε² for consistency sampling).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from skiptune.errors import ConfigurationError
from skiptune.models import load_model
from skiptune.sampling import (
    SAMPLERS,
    SeededStepNoise,
    consistency,
    edm_stochastic,
    euler_ancestral,
    heun,
    initial_noise,
    karras_sigmas,
    sample,
    sigma_grid,
)
from skiptune.sampling.noise import step_noise
from skiptune.sampling.solvers import TIMESTEP_GRIDS

DEMO = Path(__file__).resolve().parents[2] / "skiptune" / "assets" / "demo_unet.pt"
STOCHASTIC = sorted(name for name, spec in SAMPLERS.items() if spec.stochastic)
DATA_STD = 0.5
SHAPE = (1, 4, 4)


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return x * DATA_STD**2 / (DATA_STD**2 + sigma[:, None, None, None] ** 2)


def seeded(x: torch.Tensor, seed: int = 0) -> SeededStepNoise:
    return SeededStepNoise(x.shape[0], tuple(x.shape[1:]), seed=seed)


class DiscreteGaussianModel:
    """A discrete-time SamplingModel (a table of 1,000 training σ) with the Gaussian denoiser:
    what the samplers on training timesteps (``ddim``, ``lcm``...) need to run."""

    sigma_min, sigma_max = 0.01, 80.0
    discrete_sigmas = torch.linspace(0.01, 80.0, 1000)
    device = torch.device("cpu")
    noise_shape = SHAPE

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, condition: Any = None) -> torch.Tensor:
        return gaussian_denoiser(x, sigma)


def model_for(sampler: str) -> Any:
    """The demo model, or for a sampler on training timesteps (which it has none of) a
    discrete-time stand-in."""
    if SAMPLERS[sampler].grid in TIMESTEP_GRIDS:
        return DiscreteGaussianModel()
    return load_model(DEMO)


def test_step_noise_is_per_sample_and_per_step() -> None:
    whole = step_noise(6, SHAPE, seed=10, step=3)
    parts = torch.cat([step_noise(2, SHAPE, seed=10, start=s, step=3) for s in (0, 2, 4)])
    assert torch.equal(whole, parts)                      # any batch split, the same noise
    assert not torch.equal(whole, step_noise(6, SHAPE, seed=10, step=4))
    assert not torch.equal(whole, initial_noise(6, SHAPE, seed=10))
    assert abs(float(whole.mean())) < 0.5 and 0.5 < float(whole.std()) < 1.5
    copies = SeededStepNoise(2, SHAPE, seed=10, copies=3)(3)
    assert torch.equal(copies, whole[:2].repeat(3, 1, 1, 1))


def test_step_noise_rejects_bad_steps() -> None:
    with pytest.raises(ConfigurationError, match="step must be"):
        step_noise(2, SHAPE, seed=0, step=-1)


@pytest.mark.parametrize("sampler", STOCHASTIC)
def test_a_stochastic_sampler_without_step_noise_says_what_to_pass(sampler: str) -> None:
    model = model_for(sampler)
    with pytest.raises(ConfigurationError, match="stochastic sampler: pass step_noise"):
        sample(model, initial_noise(2, model.noise_shape, seed=0), sampler=sampler, nfe=3)


@pytest.mark.parametrize("sampler", STOCHASTIC)
def test_a_batch_equals_its_samples_one_by_one(sampler: str) -> None:
    model = model_for(sampler)
    nfe = 5
    noise = initial_noise(3, model.noise_shape, seed=7)
    together = sample(model, noise, sampler=sampler, nfe=nfe,
                      step_noise=SeededStepNoise(3, model.noise_shape, seed=7))
    alone = torch.cat([
        sample(model, noise[j:j + 1], sampler=sampler, nfe=nfe,
               step_noise=SeededStepNoise(1, model.noise_shape, seed=7, start=j))
        for j in range(3)
    ])
    torch.testing.assert_close(together, alone, rtol=0, atol=5e-4)   # float32 batching
    other = sample(model, noise, sampler=sampler, nfe=nfe,
                   step_noise=SeededStepNoise(3, model.noise_shape, seed=8))
    if sampler != "consistency" or nfe > 1:
        assert not torch.allclose(together, other)         # the step noise matters


def test_deterministic_samplers_ignore_step_noise_bit_for_bit() -> None:
    model = load_model(DEMO)
    noise = initial_noise(2, model.noise_shape, seed=0)
    for name, spec in SAMPLERS.items():
        if spec.stochastic or spec.grid == "discrete":
            continue
        plain = sample(model, noise, sampler=name, nfe=5 if name != "heun" else 9)
        given = sample(model, noise, sampler=name, nfe=5 if name != "heun" else 9,
                       step_noise=SeededStepNoise(2, model.noise_shape, seed=1))
        assert torch.equal(plain, given), name


def test_edm_stochastic_without_churn_is_heun_exactly() -> None:
    x = initial_noise(8, SHAPE, seed=0, dtype=torch.float64) * 80
    sigmas = karras_sigmas(6, sigma_min=0.002, sigma_max=80, dtype=torch.float64)
    churned = edm_stochastic(gaussian_denoiser, x, sigmas, noise=seeded(x), churn=0.0)
    assert torch.equal(churned, heun(gaussian_denoiser, x, sigmas))


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m_sde", "edm_stochastic"])
def test_sde_samplers_converge_to_the_data_distribution(sampler: str) -> None:
    # 4096 samples of 16 values: the variance's standard error is about 0.6 %.
    x0 = initial_noise(4096, SHAPE, seed=0, dtype=torch.float64)
    spec = SAMPLERS[sampler]
    errors = []
    for steps in (16, 64, 256):
        sigmas = karras_sigmas(steps, sigma_min=0.002, sigma_max=80, dtype=torch.float64)
        images = spec.fn(gaussian_denoiser, x0 * 80, sigmas,  # type: ignore[call-arg]
                         noise=lambda i: step_noise(4096, SHAPE, seed=0, step=i,
                                                    dtype=torch.float64))
        errors.append(abs(float(images.var()) / DATA_STD**2 - 1))
    print(f"{sampler}: relative variance error at 16, 64, 256 steps: {errors}")
    # Weak order 1 at least: each 4× more steps cuts the error by more than 2×.
    assert errors[0] > 2 * errors[1] > 4 * errors[2]
    assert errors[-1] < 0.06


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_consistency_sampling_keeps_the_exact_distribution_at_any_step_count(steps: int) -> None:
    # With the exact consistency function every step count samples N(0, s² + ε²): the
    # re-noising to √(σ² − ε²) puts each intermediate sample exactly on the σ marginal.
    epsilon = 0.4

    def flow_map(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x * torch.sqrt((DATA_STD**2 + epsilon**2) / (DATA_STD**2 + sigma**2))[
            :, None, None, None]

    class Model:
        sigma_min, sigma_max, discrete_sigmas = epsilon, 80.0, None
        device = torch.device("cpu")

        def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return flow_map(x, sigma)

    model = Model()
    sigmas = sigma_grid(model, sampler="consistency", nfe=steps)
    assert len(sigmas) == steps + 1 and sigmas[-1].item() == pytest.approx(epsilon)
    noise = initial_noise(8192, SHAPE, seed=1)
    images = sample(model, noise, sampler="consistency", nfe=steps,
                    step_noise=SeededStepNoise(8192, SHAPE, seed=1))
    assert float(images.var()) == pytest.approx(DATA_STD**2 + epsilon**2, rel=0.02)


def test_consistency_matches_diffusers_cm_scheduler_with_the_same_noise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scheduling = pytest.importorskip("diffusers.schedulers.scheduling_consistency_models")
    scheduler = scheduling.CMStochasticIterativeScheduler(clip_denoised=False)
    scheduler.set_timesteps(4)
    sigma_min, sigma_data = scheduler.config.sigma_min, scheduler.config.sigma_data
    x = initial_noise(5, SHAPE, seed=3, dtype=torch.float64)

    def consistency_fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * 0.8 + 0.1 * x / (1 + sigma[:, None, None, None])

    noises = seeded(x, seed=3)
    steps_taken: list[int] = []

    def fake_randn(shape: tuple[int, ...], **_: object) -> torch.Tensor:
        steps_taken.append(len(steps_taken))
        return noises(len(steps_taken) - 1).to(torch.float64)

    monkeypatch.setattr(scheduling, "randn_tensor", fake_randn)
    sample_ = x * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        sigma = float(scheduler.sigmas[scheduler.step_index or 0])
        c_skip = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
        c_out = (sigma - sigma_min) * sigma_data / math.sqrt(sigma**2 + sigma_data**2)
        target = consistency_fn(sample_, sample_.new_full((5,), sigma))
        model_output = (target - c_skip * sample_) / c_out    # so that the scheduler's f is ours
        sample_ = scheduler.step(model_output, t, sample_).prev_sample
    ours = consistency(consistency_fn, x * scheduler.sigmas[0].double(),
                       scheduler.sigmas.double(), noise=lambda i: noises(i).double())
    torch.testing.assert_close(ours, sample_, rtol=1e-5, atol=1e-5)


def test_euler_ancestral_matches_diffusers_with_the_same_noise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scheduling = pytest.importorskip(
        "diffusers.schedulers.scheduling_euler_ancestral_discrete")
    scheduler = scheduling.EulerAncestralDiscreteScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(6)
    x = initial_noise(5, SHAPE, seed=4, dtype=torch.float64)
    noises = seeded(x, seed=4)
    calls: list[int] = []

    def fake_randn(shape: tuple[int, ...], **_: object) -> torch.Tensor:
        calls.append(len(calls))
        return noises(len(calls) - 1).to(torch.float64)

    monkeypatch.setattr(scheduling, "randn_tensor", fake_randn)
    sigmas = scheduler.sigmas.double()
    sample_ = x * sigmas[0]
    for t in scheduler.timesteps:
        sigma = sigmas[scheduler.step_index or 0]
        eps = (sample_ - gaussian_denoiser(sample_, sample_.new_full((5,), float(sigma)))) / sigma
        sample_ = scheduler.step(eps, t, sample_).prev_sample
    ours = euler_ancestral(gaussian_denoiser, x * sigmas[0], sigmas,
                           noise=lambda i: noises(i).double())
    torch.testing.assert_close(ours, sample_, rtol=1e-5, atol=1e-5)
