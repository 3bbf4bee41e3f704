"""The samplers against the exact denoiser of a Gaussian mixture: order, agreement, exact NFE."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
import torch

from skiptune.errors import ConfigurationError
from skiptune.sampling import (
    SAMPLERS,
    SamplerSpec,
    ddim,
    ddim_sigmas,
    euler,
    get_sampler,
    karras_sigmas,
    nfe_for_steps,
    steps_for_nfe,
)

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
ODE_SAMPLERS = {name: spec for name, spec in SAMPLERS.items() if not spec.stochastic}
ORDER_STEPS = (8, 16, 32, 64)
EXPECTED_ORDER = {
    "euler": (0.8, 1.3),
    "ddim": (0.8, 1.3),
    "heun": (1.7, 3.5),
    "dpmpp_2m": (1.7, 3.5),
    "unipc": (1.7, 3.5),
    # Fourth-order Adams–Bashforth weights, but for equal steps: on Karras' uneven grid the
    # step ratio changes from step to step and the global order falls to 2 (measured 2.12).
    "ipndm": (1.7, 3.5),
}


def run(spec: SamplerSpec, denoiser: Any, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """A sampler called as ``sample`` calls it: a stochastic one gets seeded step noise."""
    if not spec.stochastic:
        return spec.fn(denoiser, x, sigmas)  # type: ignore[call-arg]

    def noise(step: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(step)
        return torch.randn(x.shape, generator=generator, dtype=x.dtype)

    return spec.fn(denoiser, x, sigmas, noise=noise)


@dataclass
class GaussianMixture:
    """Data y ~ Σ_k π_k N(μ_k, s_k² I) as 1×2×2 images; its exact denoiser E[y | x = y + σ·n]."""

    means: torch.Tensor    # [K, 4]
    stds: torch.Tensor     # [K]
    weights: torch.Tensor  # [K]
    calls: int = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert sigma.shape == (x.shape[0],)
        flat = x.reshape(x.shape[0], -1)
        variance = self.stds**2 + sigma[:, None] ** 2           # [B, K]: s_k² + σ²
        diff = flat[:, None, :] - self.means                     # [B, K, D]
        log_density = (
            self.weights.log()
            - 0.5 * (diff**2).sum(-1) / variance
            - 0.5 * flat.shape[1] * variance.log()
        )
        responsibilities = torch.softmax(log_density, dim=1)     # p(k | x)
        posterior_means = self.means + (self.stds**2 / variance)[..., None] * diff
        return (responsibilities[..., None] * posterior_means).sum(1).reshape(x.shape)


def make_mixture() -> GaussianMixture:
    return GaussianMixture(
        means=torch.tensor(
            [[1.0, -0.5, 0.3, 0.8], [-0.8, 0.6, -0.4, -0.2], [0.2, 0.9, 0.7, -0.9]],
            dtype=torch.float64,
        ),
        stds=torch.tensor([0.3, 0.5, 0.2], dtype=torch.float64),
        weights=torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64),
    )


def ode_grid(steps: int) -> torch.Tensor:
    """Karras grid of ``steps`` intervals from σ_max to σ_min, without the final 0."""
    return karras_sigmas(
        steps + 1, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, dtype=torch.float64
    )[:-1]


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).pow(2).mean().sqrt().item()


def rk4_in_log_sigma(denoiser: GaussianMixture, x: torch.Tensor, steps: int) -> torch.Tensor:
    """Classic RK4 on dx/dt = x − D(x; e^t), t = log σ, uniform in t from σ_max to σ_min."""
    times = torch.linspace(math.log(SIGMA_MAX), math.log(SIGMA_MIN), steps + 1).tolist()

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        return x - denoiser(x, x.new_full((x.shape[0],), math.exp(t)))

    for t, t_next in pairwise(times):
        h = t_next - t
        k1 = velocity(x, t)
        k2 = velocity(x + h / 2 * k1, t + h / 2)
        k3 = velocity(x + h / 2 * k2, t + h / 2)
        k4 = velocity(x + h * k3, t_next)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny tensors: intra-op threads only contend for the two shared cores (10× slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def start() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return SIGMA_MAX * torch.randn(32, 1, 2, 2, generator=generator, dtype=torch.float64)


@pytest.fixture(scope="module")
def reference(start: torch.Tensor) -> torch.Tensor:
    """The ODE solution at σ_min from RK4 with 256 steps (within 4e-7 RMS of Heun with 4096)."""
    return rk4_in_log_sigma(make_mixture(), start, 256)


@pytest.fixture(scope="module")
def measured_orders(start: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Slope of log error vs log steps for each sampler, σ_max → σ_min."""
    orders = {}
    for name, spec in ODE_SAMPLERS.items():
        errors = [rms(spec.fn(make_mixture(), start, ode_grid(n)), reference) for n in ORDER_STEPS]
        slope = np.polyfit(np.log(ORDER_STEPS), np.log(errors), 1)[0]
        orders[name] = float(-slope)
        print(f"{name}: RMS errors {[f'{e:.2e}' for e in errors]}, measured order {-slope:.3f}")
    return orders


@pytest.mark.parametrize("name", sorted(ODE_SAMPLERS))
def test_convergence_order(name: str, measured_orders: dict[str, float]) -> None:
    low, high = EXPECTED_ORDER[name]
    print(f"measured convergence order of {name}: {measured_orders[name]:.3f}")
    assert low <= measured_orders[name] <= high


def test_unipc_corrector_raises_the_order_above_its_predictor(
    measured_orders: dict[str, float],
) -> None:
    # UniP-2 (bh2) is DPM-Solver++(2M); the UniC corrector adds one order on top of it.
    assert measured_orders["unipc"] > measured_orders["dpmpp_2m"] + 0.3


def test_ddim_equals_euler_on_any_grid(start: torch.Tensor) -> None:
    mixture = make_mixture()
    table = torch.linspace(0.01, SIGMA_MAX, 1000, dtype=torch.float64)
    for sigmas in (ode_grid(10), ddim_sigmas(10, table, dtype=torch.float64)):
        torch.testing.assert_close(
            ddim(mixture, start, sigmas), euler(mixture, start, sigmas), rtol=1e-12, atol=1e-12
        )


def test_all_samplers_converge_to_the_same_images(
    start: torch.Tensor, reference: torch.Tensor
) -> None:
    # On a grid ending in 0 every sampler's last step returns D(x; σ_min).
    mixture = make_mixture()
    target = mixture(reference, start.new_full((start.shape[0],), SIGMA_MIN))
    for name, spec in ODE_SAMPLERS.items():
        budgets = (9, 17, 33, 65) if name == "heun" else (8, 16, 32, 64)
        errors = []
        for nfe in budgets:
            sigmas = karras_sigmas(
                spec.steps_for_nfe(nfe),
                sigma_min=SIGMA_MIN,
                sigma_max=SIGMA_MAX,
                dtype=torch.float64,
            )
            errors.append(rms(spec.fn(mixture, start, sigmas), target))
        print(f"{name} at {budgets} NFE: RMS errors {[f'{e:.2e}' for e in errors]}")
        assert all(a > b for a, b in pairwise(errors)), (name, errors)
        assert errors[-1] < (0.05 if name in ("euler", "ddim") else 0.01), (name, errors)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_calls_equal_nfe_on_grids_ending_in_zero(name: str, start: torch.Tensor) -> None:
    spec = get_sampler(name)
    for nfe in (1, 3, 5, 9, 15) if spec.evals_per_step == 2 else (1, 2, 3, 9, 10):
        mixture = make_mixture()
        sigmas = karras_sigmas(
            steps_for_nfe(name, nfe), sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, dtype=torch.float64
        )
        images = run(spec, mixture, start, sigmas)
        assert mixture.calls == nfe
        assert torch.isfinite(images).all()


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_steps_and_nfe_round_trip(name: str) -> None:
    for steps in range(1, 30):
        assert steps_for_nfe(name, nfe_for_steps(name, steps)) == steps
    assert nfe_for_steps(name, 5) == (9 if name in ("heun", "edm_stochastic") else 5)


@pytest.mark.parametrize("name", sorted(ODE_SAMPLERS))
def test_callback_sees_every_step_in_order(name: str, start: torch.Tensor) -> None:
    sigmas = karras_sigmas(6, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, dtype=torch.float64)
    seen: list[tuple[int, float]] = []

    def callback(i: int, sigma: float, x: torch.Tensor, denoised: torch.Tensor) -> None:
        assert x.shape == denoised.shape == start.shape
        seen.append((i, sigma))

    get_sampler(name).fn(make_mixture(), start, sigmas, callback=callback)
    assert seen == list(enumerate(sigmas[:-1].tolist()))


@pytest.mark.parametrize(
    ("name", "nfe", "expected"),
    [
        ("heun", 8, "heun cannot use exactly 8 NFE (it uses 2·steps − 1); "
                    "the nearest budgets it can meet are 7 and 9"),
        ("heun", 0, "the smallest budget it can meet is 1"),
        ("heun", -3, "the smallest budget it can meet is 1"),
        ("heun", 2.5, "the nearest budgets it can meet are 1 and 3"),
        ("euler", 2.5, "the nearest budgets it can meet are 2 and 3"),
        ("unipc", 0, "the smallest budget it can meet is 1"),
        ("dpmpp_2m", 9.0, "pass nfe=9"),
        ("dpmpp_2m", "9", "got '9'"),
        ("ddim", math.nan, "whole number"),
    ],
)
def test_unreachable_budget_names_the_nearest_ones(name: str, nfe: object, expected: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        steps_for_nfe(name, nfe)  # type: ignore[arg-type]
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["hune", "DDPM", "", "heun "])
def test_unknown_sampler_lists_the_known_ones(name: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown sampler") as info:
        steps_for_nfe(name, 9)
    assert all(known in str(info.value) for known in SAMPLERS)


def test_bad_steps_and_bad_registry_entries_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="steps must be"):
        nfe_for_steps("heun", 0)
    with pytest.raises(ConfigurationError, match="grid"):
        SamplerSpec("mine", euler, 1, 1, "one call per step", grid="linear")


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_reject_a_grid_that_is_not_decreasing(name: str, start: torch.Tensor) -> None:
    rising = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    with pytest.raises(ConfigurationError, match="strictly decreasing"):
        run(get_sampler(name), make_mixture(), start, rising)


def test_ipndm_beats_heun_at_equal_nfe(start: torch.Tensor, reference: torch.Tensor) -> None:
    # Why iPNDM is worth a place among few-step samplers: one call per step, so at the same
    # budget it takes twice Heun's steps, and its error is the smaller for it.
    for nfe in (9, 15, 31):
        errors = {name: rms(SAMPLERS[name].fn(make_mixture(), start,
                                               ode_grid(steps_for_nfe(name, nfe))), reference)
                  for name in ("heun", "ipndm")}
        assert errors["ipndm"] < errors["heun"], (nfe, errors)
