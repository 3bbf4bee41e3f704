"""σ-space samplers for an EDM denoiser, deterministic and stochastic, and their NFE rules.

Every sampler is one function with k-diffusion's contract,
``sampler(denoiser, x, sigmas, *, callback=None) -> x``: ``denoiser(x, sigma) -> x0`` with
``sigma`` of shape [batch] (x = y + σ·n, returns the estimate of y); ``x`` is the initial
sample already scaled by ``sigmas[0]``; ``sigmas`` is a decreasing 1-D tensor that usually
ends in 0. The deterministic ones integrate the probability-flow ODE dx/dσ = (x − D(x; σ))/σ
(Karras et al. 2022, eq. 3 with σ(t) = t, s(t) = 1) and report progress through ``callback``
only. The stochastic ones also take ``noise``: ``noise(i)`` is the unit Gaussian noise step
i adds, one row per sample (``skiptune.sampling.SeededStepNoise`` draws row j from sample
j's own seed, so batches split any way give the same images).
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Protocol, TypeAlias

from skiptune._checks import is_whole
from skiptune.errors import ConfigurationError

if TYPE_CHECKING:    # the solvers only do arithmetic on the tensors they are given
    import torch

__all__ = [
    "DEFAULT_SAMPLER",
    "GRIDS",
    "MAX_NFE",
    "SAMPLERS",
    "TIMESTEP_GRIDS",
    "Denoiser",
    "Sampler",
    "SamplerCallback",
    "SamplerSpec",
    "StepNoise",
    "StochasticSampler",
    "ancestral_step",
    "consistency",
    "ddim",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "edm_stochastic",
    "euler",
    "euler_ancestral",
    "get_sampler",
    "heun",
    "ipndm",
    "nfe_for_steps",
    "steps_for_nfe",
    "to_d",
    "unipc",
]

Denoiser: TypeAlias = "Callable[[torch.Tensor, torch.Tensor], torch.Tensor]"

StepNoise: TypeAlias = "Callable[[int], torch.Tensor]"
"""``noise(i)``: the unit Gaussian noise of step i, shaped, typed and placed like ``x``."""

DEFAULT_SAMPLER = "heun"
"""The sampler used where none is named, for a model without its own (``default_sampler``)."""

MAX_NFE = 1000
"""The largest budget accepted: DDPM's full chain. Skip-Tuning is about few steps (5–50), and a
mistyped budget of billions would otherwise fail deep inside sampling, allocating its σ grid."""


class SamplerCallback(Protocol):
    """Progress hook: called once per step with the step index, its σ, x and D(x; σ)."""

    def __call__(self, i: int, sigma: float, x: torch.Tensor, denoised: torch.Tensor) -> None: ...


class Sampler(Protocol):
    """The contract every sampler meets: integrate from ``sigmas[0]`` to ``sigmas[-1]``."""

    def __call__(
        self,
        denoiser: Denoiser,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        *,
        callback: SamplerCallback | None = None,
    ) -> torch.Tensor: ...


class StochasticSampler(Protocol):
    """A sampler that adds noise as it goes: the contract above plus the step noise."""

    def __call__(
        self,
        denoiser: Denoiser,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        *,
        noise: StepNoise,
        callback: SamplerCallback | None = None,
    ) -> torch.Tensor: ...


def to_d(x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
    """Convert a denoiser output to the ODE derivative dx/dσ (Karras et al. 2022, eq. 3)."""
    return (x - denoised) / sigma


def _denoise(denoiser: Denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Call the denoiser at one noise level, given as a σ tensor of shape [batch]."""
    return denoiser(x, x.new_full((x.shape[0],), sigma))


def _sigma_values(sigmas: torch.Tensor) -> list[float]:
    """Return the grid as Python floats after checking it is 1-D, decreasing and ≥ 0."""
    if sigmas.ndim != 1:
        raise ConfigurationError(
            f"sigmas must be a 1-D tensor, got shape {tuple(sigmas.shape)}; "
            "build one with karras_sigmas or ddim_sigmas"
        )
    values = sigmas.tolist()
    if any(a <= b for a, b in pairwise(values)) or (values and values[-1] < 0):
        raise ConfigurationError(
            f"sigmas must be strictly decreasing and ≥ 0, got {values}; "
            "build them with karras_sigmas or ddim_sigmas"
        )
    return values


def euler(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: SamplerCallback | None = None,
) -> torch.Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Alg. 2 without churn)."""
    for i, (sigma, sigma_next) in enumerate(pairwise(_sigma_values(sigmas))):
        denoised = _denoise(denoiser, x, sigma)
        if callback is not None:
            callback(i, sigma, x, denoised)
        # Euler step.
        x = x + (sigma_next - sigma) * to_d(x, sigma, denoised)
    return x


def heun(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: SamplerCallback | None = None,
) -> torch.Tensor:
    """Heun's 2nd-order method, deterministic (Karras et al. 2022, Algorithm 1).

    The step to σ = 0 is Euler only, so a grid of n steps ending in 0 costs 2·n − 1 calls.
    """
    for i, (sigma, sigma_next) in enumerate(pairwise(_sigma_values(sigmas))):
        denoised = _denoise(denoiser, x, sigma)
        if callback is not None:
            callback(i, sigma, x, denoised)
        x = _heun_step(denoiser, x, sigma, sigma_next, denoised)
    return x


def _heun_step(
    denoiser: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float, denoised: torch.Tensor
) -> torch.Tensor:
    """One Heun step from x at σ, given D(x; σ): Euler, then the trapezoid correction unless
    the step lands on σ = 0 (one more call then)."""
    # Euler step.
    d = to_d(x, sigma, denoised)
    x_next = x + (sigma_next - sigma) * d
    # Apply 2nd order correction, unless the step lands on σ = 0.
    if sigma_next != 0:
        d_next = to_d(x_next, sigma_next, _denoise(denoiser, x_next, sigma_next))
        x_next = x + (sigma_next - sigma) * (0.5 * d + 0.5 * d_next)
    return x_next


def dpmpp_2m(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: SamplerCallback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) in σ-space, as k-diffusion's sample_dpmpp_2m.

    Multistep with λ = −log σ: the first step is first order (no history yet) and the step to
    σ = 0 returns the denoised estimate. One call per step.
    """
    denoised_prev: torch.Tensor | None = None
    h_prev = 0.0
    for i, (sigma, sigma_next) in enumerate(pairwise(_sigma_values(sigmas))):
        denoised = _denoise(denoiser, x, sigma)
        if callback is not None:
            callback(i, sigma, x, denoised)
        if sigma_next == 0:
            # Step to σ = 0 (λ = +∞): the solution is the denoised estimate itself.
            x = denoised
            continue
        h = math.log(sigma / sigma_next)
        if denoised_prev is None:
            # First-order step (DPM-Solver++(1), that is DDIM).
            denoised_d = denoised
        else:
            # 2nd-order multistep: extrapolate D linearly in λ from the previous point.
            r = h_prev / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * denoised_prev
        x = (sigma_next / sigma) * x - math.expm1(-h) * denoised_d
        denoised_prev, h_prev = denoised, h
    return x


def _unipc_update(
    x: torch.Tensor,                                   # sample at sigma_from
    sigma_from: float,                                 # σ_s0 (> 0)
    sigma_to: float,                                   # σ_t (> 0, < sigma_from)
    denoised_from: torch.Tensor,                       # D(x; sigma_from)
    *,
    before: tuple[float, torch.Tensor] | None = None,  # (σ, D) of the point before; multistep
    denoised_to: torch.Tensor | None = None,           # D at the predicted point; makes it UniC
) -> torch.Tensor:
    """One UniPC update (Zhao et al. 2023), variant bh2, data prediction, VE (α = 1, λ = −log σ).

    Without ``denoised_to`` it is the predictor UniP (order 2 with ``before``, else 1); with it,
    the corrector UniC, which redoes the same step from ``x`` one order higher.
    """
    h = math.log(sigma_from / sigma_to)
    b_h = math.expm1(-h)  # B(h) of bh2; here it also equals h·φ_1 of the exponential integrator
    x_base = (sigma_to / sigma_from) * x - b_h * denoised_from
    d1 = None
    if before is not None:
        sigma_before, denoised_before = before
        r1 = math.log(sigma_from / sigma_before) / h  # (λ_before − λ_from)/h, negative
        d1 = (denoised_before - denoised_from) / r1
    if denoised_to is None:
        # UniP: order 1 is DDIM; order 2 takes the fixed weight 1/2 (then equals DPM-Solver++(2M)).
        return x_base if d1 is None else x_base - b_h * 0.5 * d1
    d1_to = denoised_to - denoised_from
    if d1 is None:
        # UniC-1: weight 1/2 on the new evaluation.
        return x_base - b_h * 0.5 * d1_to
    # UniC-2: weights ρ solve R·ρ = b with R = [[1, 1], [r1, 1]], b_k = (k−1)!·φ_k(−h)/B(h).
    phi_1 = b_h / -h - 1
    phi_2 = phi_1 / -h - 0.5
    b_1, b_2 = phi_1 / b_h, 2 * phi_2 / b_h
    rho_before = (b_1 - b_2) / (1 - r1)
    rho_to = b_1 - rho_before
    return x_base - b_h * (rho_before * d1 + rho_to * d1_to)


def unipc(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: SamplerCallback | None = None,
) -> torch.Tensor:
    """UniPC (Zhao et al. 2023), order 2 with the UniC corrector, variant bh2, in σ-space.

    As diffusers' UniPCMultistepScheduler: the corrector at each new point reuses the call made
    there for the next predictor, so one call per step and none at σ = 0. The first step
    (warm-up) and the step to σ = 0 (h = ∞) are order 1.
    """
    last: tuple[float, torch.Tensor, torch.Tensor] | None = None  # (σ, x, D) the predictor left
    before: tuple[float, torch.Tensor] | None = None  # (σ, D) of the point before that
    for i, (sigma, sigma_next) in enumerate(pairwise(_sigma_values(sigmas))):
        denoised = _denoise(denoiser, x, sigma)
        if last is not None:
            # Apply the UniC corrector to the last step, reusing this evaluation.
            sigma_last, x_last, denoised_last = last
            x = _unipc_update(
                x_last, sigma_last, sigma, denoised_last, before=before, denoised_to=denoised
            )
        if callback is not None:
            callback(i, sigma, x, denoised)
        if sigma_next == 0:
            # Step to σ = 0 (order 1, λ = +∞): the solution is the denoised estimate itself.
            x = denoised
            continue
        # UniP predictor: order 1 on the warm-up step, else order 2.
        before = None if last is None else (last[0], last[2])
        last = (sigma, x, denoised)
        x = _unipc_update(x, sigma, sigma_next, denoised, before=before)
    return x


def ddim(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: SamplerCallback | None = None,
) -> torch.Tensor:
    """DDIM (Song et al. 2021), deterministic (η = 0), in its ε form.

    ε̂ = (x − x0)/σ, then x_next = x0 + σ_next·ε̂. In σ-space this is exactly Euler's step;
    what makes it DDIM is the grid: the model's discrete training timesteps (``ddim_sigmas``).
    """
    for i, (sigma, sigma_next) in enumerate(pairwise(_sigma_values(sigmas))):
        denoised = _denoise(denoiser, x, sigma)
        if callback is not None:
            callback(i, sigma, x, denoised)
        # Re-noise the clean estimate with the predicted noise at the next level.
        eps = (x - denoised) / sigma
        x = denoised + sigma_next * eps
    return x


# Adams–Bashforth weights of orders 1–4 on equal steps, newest derivative first.
_ADAMS_BASHFORTH: tuple[tuple[float, ...], ...] = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)


def ipndm(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: SamplerCallback | None = None,
) -> torch.Tensor:
    """Improved PNDM (Zhang & Chen 2023, DEIS; as in the diff-sampler code), in σ-space.

    A linear multistep method on dx/dσ: each step takes the Adams–Bashforth combination of
    the last ``k`` derivatives with the fixed weights of equal steps, k = 1, 2, 3 on the
    first three steps (a lower-order start: no history yet), then 4. One call per step, also
    on the step to σ = 0 (its derivative is known; only the result's point is not called).
    """
    history: list[torch.Tensor] = []        # derivatives, newest first, at most four
    for i, (sigma, sigma_next) in enumerate(pairwise(_sigma_values(sigmas))):
        denoised = _denoise(denoiser, x, sigma)
        if callback is not None:
            callback(i, sigma, x, denoised)
        history = [to_d(x, sigma, denoised), *history][: len(_ADAMS_BASHFORTH)]
        weights = _ADAMS_BASHFORTH[len(history) - 1]
        slope = sum(w * d for w, d in zip(weights, history, strict=True))
        x = x + (sigma_next - sigma) * slope
    return x


# Stochastic samplers: each step draws fresh noise from ``noise(step)``.


def ancestral_step(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """(σ_up, σ_down) of an ancestral step from σ to σ_next (k-diffusion's get_ancestral_step).

    σ_up² = η²·σ_next²·(σ² − σ_next²)/σ² is the DDPM posterior's variance (capped at σ_next²)
    and σ_down² = σ_next² − σ_up²: step deterministically to σ_down, then add noise of σ_up.
    """
    if sigma_next == 0:
        return 0.0, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2)
                                               / sigma**2))
    return sigma_up, math.sqrt(sigma_next**2 - sigma_up**2)


def euler_ancestral(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: StepNoise,
    callback: SamplerCallback | None = None,
) -> torch.Tensor:
    """Euler ancestral (η = 1), as k-diffusion's sample_euler_ancestral and diffusers'
    EulerAncestralDiscreteScheduler: an Euler step to σ_down, then noise of σ_up (see
    :func:`ancestral_step`). One call per step; the step to σ = 0 adds no noise."""
    for i, (sigma, sigma_next) in enumerate(pairwise(_sigma_values(sigmas))):
        denoised = _denoise(denoiser, x, sigma)
        if callback is not None:
            callback(i, sigma, x, denoised)
        sigma_up, sigma_down = ancestral_step(sigma, sigma_next)
        x = x + (sigma_down - sigma) * to_d(x, sigma, denoised)
        if sigma_up > 0:
            x = x + sigma_up * noise(i)
    return x


def dpmpp_2m_sde(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: StepNoise,
    callback: SamplerCallback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) SDE (Lu et al. 2022), η = 1, midpoint correction, in σ-space, as
    k-diffusion's sample_dpmpp_2m_sde and diffusers' ``sde-dpmsolver++``.

    With h = log(σ/σ_next): x ← (σ_next/σ)·e^(−h)·x + (1 − e^(−2h))·D, plus the second-order
    term ½·(1 − e^(−2h))·(D − D_prev)/r once there is history (r = h_prev/h), plus noise of
    σ_next·√(1 − e^(−2h)). Independent Gaussian noise per step has the law of k-diffusion's
    Brownian-tree increments. One call per step; the step to σ = 0 returns D.
    """
    denoised_prev: torch.Tensor | None = None
    h_prev = 0.0
    for i, (sigma, sigma_next) in enumerate(pairwise(_sigma_values(sigmas))):
        denoised = _denoise(denoiser, x, sigma)
        if callback is not None:
            callback(i, sigma, x, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        h = math.log(sigma / sigma_next)
        decay = -math.expm1(-2 * h)        # 1 − e^(−2h)
        x = (sigma_next / sigma) * math.exp(-h) * x + decay * denoised
        if denoised_prev is not None:
            x = x + 0.5 * decay * (h / h_prev) * (denoised - denoised_prev)
        x = x + sigma_next * math.sqrt(decay) * noise(i)
        denoised_prev, h_prev = denoised, h
    return x


def edm_stochastic(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: StepNoise,
    callback: SamplerCallback | None = None,
    churn: float = 40.0,                   # S_churn
    churn_min: float = 0.05,               # S_tmin
    churn_max: float = 50.0,               # S_tmax
    noise_scale: float = 1.003,            # S_noise
) -> torch.Tensor:
    """EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): Heun steps, each after
    raising σ to σ̂ = (1 + γ)·σ with fresh noise of √(σ̂² − σ²)·S_noise.

    γ = min(S_churn/N, √2 − 1) on steps whose σ lies in [S_tmin, S_tmax], else 0, with N the
    steps. The defaults are EDM's stochastic ImageNet-64 settings (its Table 5). With
    ``churn=0`` it is :func:`heun` exactly. Costs 2·steps − 1 calls, as Heun.
    """
    values = _sigma_values(sigmas)
    gamma_max = min(churn / max(1, len(values) - 1), math.sqrt(2) - 1)
    for i, (sigma, sigma_next) in enumerate(pairwise(values)):
        gamma = gamma_max if churn_min <= sigma <= churn_max else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:
            # Raise the noise level: x̂ = x + √(σ̂² − σ²)·S_noise·ε.
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * noise_scale * noise(i)
        denoised = _denoise(denoiser, x, sigma_hat)
        if callback is not None:
            callback(i, sigma_hat, x, denoised)
        x = _heun_step(denoiser, x, sigma_hat, sigma_next, denoised)
    return x


def consistency(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    noise: StepNoise,
    callback: SamplerCallback | None = None,
) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) for a consistency model,
    whose ``denoiser`` is the consistency function f(x, σ).

    Denoise to x̂₀ at σ_i, then re-noise to σ_(i+1) as x̂₀ + √(σ_(i+1)² − ε²)·z, where
    ε = ``sigmas[-1]`` (the model's σ_min on its own grid, as diffusers'
    CMStochasticIterativeScheduler; 0 on a grid that ends in 0); the last step returns x̂₀.
    One call per step: one step is the model's one-step generation f(σ_max·z, σ_max).
    """
    values = _sigma_values(sigmas)
    end = values[-1]
    for i, (sigma, sigma_next) in enumerate(pairwise(values)):
        denoised = _denoise(denoiser, x, sigma)
        if callback is not None:
            callback(i, sigma, x, denoised)
        if i == len(values) - 2:
            x = denoised
        else:
            x = denoised + math.sqrt(sigma_next**2 - end**2) * noise(i)
    return x


# Registry.

GRIDS = ("karras", "discrete", "consistency", "lcm")
TIMESTEP_GRIDS = frozenset({"discrete", "lcm"})
"""The grids over a discrete-time model's training timesteps: no searched step grid replaces
them, and a model without a training σ table cannot use them."""


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler and its exact cost on a σ grid of ``steps`` intervals ending in 0.

    NFE = evals_per_step·(steps − 1) + evals_last_step, the last step being the one to σ = 0.
    A ``stochastic`` sampler's ``fn`` is a :class:`StochasticSampler`: it takes step noise.
    """

    name: str
    fn: Sampler | StochasticSampler
    evals_per_step: int      # denoiser calls on every step but the last
    evals_last_step: int     # denoiser calls on the step to σ = 0
    nfe_rule: str            # the same rule in words, for error messages
    grid: str = "karras"     # "karras": EDM's grid; "discrete": the model's training timesteps
    #                          (trailing); "consistency": EDM's grid of steps + 1 levels ending
    #                          at σ_min; "lcm": the timesteps a Latent Consistency Model samples
    stochastic: bool = False

    def __post_init__(self) -> None:
        if self.grid not in GRIDS:
            raise ConfigurationError(
                f"sampler {self.name!r} has grid {self.grid!r}; choose one of {', '.join(GRIDS)}"
            )

    def nfe_for_steps(self, steps: int) -> int:
        """Denoiser calls that ``steps`` steps (a grid of steps + 1 σ ending in 0) take."""
        if not is_whole(steps) or steps < 1:
            raise ConfigurationError(
                f"steps must be a whole number ≥ 1, got {steps!r}; pass e.g. steps=10"
            )
        return self.evals_per_step * (steps - 1) + self.evals_last_step

    def steps_for_nfe(self, nfe: int) -> int:
        """Steps that spend exactly ``nfe`` denoiser calls; an unreachable budget is an error."""
        if not isinstance(nfe, numbers.Real) or isinstance(nfe, bool) or not math.isfinite(nfe):
            raise ConfigurationError(
                f"nfe must be a whole number of denoiser calls ≥ 1, got {nfe!r}; pass e.g. nfe=9"
            )
        if not is_whole(nfe) and float(nfe).is_integer():
            raise ConfigurationError(f"nfe must be an int, got {nfe!r}; pass nfe={int(nfe)}")
        if nfe > MAX_NFE:
            raise ConfigurationError(
                f"nfe {nfe} is more than skiptune samples with (at most {MAX_NFE} denoiser calls); "
                "Skip-Tuning pays off at few steps: pass e.g. nfe=9"
            )
        steps = (nfe - self.evals_last_step) / self.evals_per_step + 1
        if is_whole(nfe) and steps >= 1 and steps == int(steps):
            return int(steps)
        lower, upper = math.floor(steps), math.ceil(steps)
        if lower < 1:
            nearest = f"the smallest budget it can meet is {self.nfe_for_steps(1)}"
        elif self.nfe_for_steps(upper) > MAX_NFE:
            nearest = f"the largest budget it can meet is {self.nfe_for_steps(lower)}"
        else:
            nearest = (
                f"the nearest budgets it can meet are {self.nfe_for_steps(lower)} "
                f"and {self.nfe_for_steps(upper)}"
            )
        raise ConfigurationError(
            f"{self.name} cannot use exactly {nfe} NFE (it uses {self.nfe_rule}); {nearest}"
        )


SAMPLERS: dict[str, SamplerSpec] = {
    spec.name: spec
    for spec in (
        SamplerSpec("euler", euler, 1, 1, "one call per step"),
        SamplerSpec("heun", heun, 2, 1, "2·steps − 1"),
        SamplerSpec("dpmpp_2m", dpmpp_2m, 1, 1, "one call per step"),
        SamplerSpec("unipc", unipc, 1, 1, "one call per step"),
        SamplerSpec("ipndm", ipndm, 1, 1, "one call per step"),
        SamplerSpec("ddim", ddim, 1, 1, "one call per step", grid="discrete"),
        SamplerSpec("euler_ancestral", euler_ancestral, 1, 1, "one call per step",
                    stochastic=True),
        SamplerSpec("dpmpp_2m_sde", dpmpp_2m_sde, 1, 1, "one call per step", stochastic=True),
        SamplerSpec("edm_stochastic", edm_stochastic, 2, 1, "2·steps − 1", stochastic=True),
        SamplerSpec("consistency", consistency, 1, 1, "one call per step", grid="consistency",
                    stochastic=True),
        # As the schedulers of distilled Stable Diffusion pipelines sample: LCMScheduler (LCM,
        # LCM-LoRA) and EulerAncestralDiscreteScheduler, trailing (SD-Turbo, SDXL-Turbo).
        SamplerSpec("lcm", consistency, 1, 1, "one call per step", grid="lcm", stochastic=True),
        SamplerSpec("euler_ancestral_discrete", euler_ancestral, 1, 1, "one call per step",
                    grid="discrete", stochastic=True),
    )
}


def get_sampler(name: str) -> SamplerSpec:
    """Look up a registered sampler by name; an unknown name lists the known ones."""
    try:
        return SAMPLERS[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), SAMPLERS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigurationError(
            f"unknown sampler {name!r}; {hint}choose one of {', '.join(sorted(SAMPLERS))}"
        ) from None


def steps_for_nfe(sampler: str, nfe: int) -> int:
    """Steps that make ``sampler`` spend exactly ``nfe`` denoiser calls on a grid ending in 0."""
    return get_sampler(sampler).steps_for_nfe(nfe)


def nfe_for_steps(sampler: str, steps: int) -> int:
    """Denoiser calls ``sampler`` spends on ``steps`` steps of a grid ending in 0."""
    return get_sampler(sampler).nfe_for_steps(steps)
