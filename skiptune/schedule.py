"""The skip schedule: one factor ρ per skip connection, from the deepest to the shallowest.

Skip-Tuning (Ma et al., ICML 2024, arXiv 2402.15170) multiplies the skip tensor the
decoder consumes by ρ_i, interpolated from ``rho_bottom`` at the deepest skip (i = 0,
nearest the bottleneck) to ``rho_top`` at the shallowest (i = k, nearest the image).
The ρ here is the skip factor only; the Karras σ-schedule exponent is named
``schedule_exponent`` everywhere in skiptune.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skiptune.errors import ConfigurationError
from skiptune.freeu import FreeU
from skiptune.steps import StepGrid

__all__ = ["SHAPES", "TuningSchedule", "check_sigma_window", "interpolation_weights"]

SHAPES = ("linear", "power", "cosine")


def interpolation_weights(
    num_skips: int, *, shape: str = "linear", gamma: float = 1.0
) -> list[float]:
    """Return w_i in [0, 1] for i = 0 (bottom) .. k (top); ρ_i = ρ_bottom + w_i·(ρ_top − ρ_bottom).

    ``linear``: w_i = i/k, the paper's schedule. ``power``: w_i = (i/k)^gamma (gamma < 1 moves
    the factors toward ρ_top sooner, gamma > 1 later). ``cosine``: w_i = (1 − cos(π·i/k))/2,
    an ease that stays near ρ_bottom at the deep end and near ρ_top at the shallow end.
    A single skip gets w = 1, that is ρ_top.
    """
    if num_skips < 1:
        raise ConfigurationError(f"a schedule needs at least one skip, got num_skips={num_skips}")
    if not math.isfinite(gamma) or gamma <= 0:
        raise ConfigurationError(f"gamma must be a finite number > 0, got {gamma}")
    k = num_skips - 1
    if k == 0:
        return [1.0]
    positions = [i / k for i in range(num_skips)]
    if shape == "linear":
        return positions
    if shape == "power":
        return [t**gamma for t in positions]
    if shape == "cosine":
        return [(1.0 - math.cos(math.pi * t)) / 2.0 for t in positions]
    raise ConfigurationError(f"unknown schedule shape {shape!r}; choose one of {', '.join(SHAPES)}")


def check_sigma_window(
    sigma_lo: float,
    sigma_hi: float,
    *,
    model_range: tuple[float, float] | None = None,   # (σ_min, σ_max) the model knows
) -> tuple[float, float]:
    """A σ window [sigma_lo, sigma_hi] with 0 ≤ lo < hi, inside ``model_range`` when given."""
    lo, hi = float(sigma_lo), float(sigma_hi)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or lo >= hi:
        raise ConfigurationError(
            f"a σ window needs finite 0 ≤ σ_lo < σ_hi, got {lo:g},{hi:g}; pass e.g. 0.2,5"
        )
    if model_range is not None:
        low, high = model_range
        # A little slack: a window typed from the model's printed range must pass.
        if lo < low * (1 - 1e-6) or hi > high * (1 + 1e-6):
            raise ConfigurationError(
                f"σ window {lo:g},{hi:g} lies outside the model's σ range {low:g} … {high:g}; "
                "pass a window inside it"
            )
    return lo, hi


@dataclass(frozen=True)
class TuningSchedule:
    """What tuning changes in a sampling run: skip factors interpolated from ``rho_bottom``
    (deepest skip) to ``rho_top`` (shallowest), and optionally FreeU's factors, the σ window
    they act in and the σ grid the sampler walks.

    Args:
        rho_bottom: factor of the deepest skip, nearest the bottleneck (≥ 0).
        rho_top: factor of the shallowest skip, nearest the input and output (≥ 0).
        shape: ``"linear"`` (the paper's), ``"power"`` (exponent ``gamma``) or ``"cosine"``.
        gamma: exponent of the ``power`` shape; ignored by the others.
        freeu: FreeU's backbone and skip factors of the first two up stages, applied with ρ
            (None: no FreeU). See :mod:`skiptune.freeu`.
        sigma_lo, sigma_hi: the σ window: ρ applies only while the denoiser's σ lies in
            [sigma_lo, sigma_hi], factor 1 outside (Ma et al. find ρ matters most at
            intermediate noise). Both None (the default): every σ.
        steps: the σ grid the sampler walks (:class:`~skiptune.steps.StepGrid`); None (the
            default): the sampler's own grid for the model.
    """

    rho_bottom: float
    rho_top: float = 1.0
    shape: str = "linear"
    gamma: float = 1.0
    freeu: FreeU | None = None
    sigma_lo: float | None = None
    sigma_hi: float | None = None
    steps: StepGrid | None = None

    def __post_init__(self) -> None:
        for name in ("rho_bottom", "rho_top"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigurationError(f"{name} must be a finite number ≥ 0, got {value!r}")
        if self.shape not in SHAPES:
            raise ConfigurationError(
                f"unknown schedule shape {self.shape!r}; choose one of {', '.join(SHAPES)}"
            )
        if not math.isfinite(self.gamma) or self.gamma <= 0:
            raise ConfigurationError(f"gamma must be a finite number > 0, got {self.gamma!r}")
        if self.freeu is not None and not isinstance(self.freeu, FreeU):
            raise ConfigurationError(f"freeu must be a FreeU or None, got {self.freeu!r}")
        if self.steps is not None and not isinstance(self.steps, StepGrid):
            raise ConfigurationError(f"steps must be a StepGrid or None, got {self.steps!r}")
        if (self.sigma_lo is None) != (self.sigma_hi is None):
            raise ConfigurationError("a σ window needs both sigma_lo and sigma_hi, or neither")
        if self.sigma_lo is not None:
            check_sigma_window(float(self.sigma_lo), float(self.sigma_hi))  # type: ignore[arg-type]

    @classmethod
    def identity(cls) -> TuningSchedule:
        """ρ = 1 at every skip: the untuned model."""
        return cls(rho_bottom=1.0, rho_top=1.0)

    @property
    def is_identity(self) -> bool:
        neutral = self.freeu is None or self.freeu.is_neutral
        return self.rho_bottom == 1.0 and self.rho_top == 1.0 and neutral

    def factors(self, num_skips: int) -> list[float]:
        """One factor per skip: index 0 = the deepest skip (bottom), last = the shallowest (top)."""
        span = self.rho_top - self.rho_bottom
        if self.shape == "linear" and num_skips > 1:
            # The paper's formula, evaluated as written: ρ_i = ρ_bottom + i·(ρ_top − ρ_bottom)/k.
            k = num_skips - 1
            return [self.rho_bottom + i * span / k for i in range(num_skips)]
        weights = interpolation_weights(num_skips, shape=self.shape, gamma=self.gamma)
        return [self.rho_bottom + w * span for w in weights]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rho_bottom": self.rho_bottom,
            "rho_top": self.rho_top,
            "shape": self.shape,
            "gamma": self.gamma,
        }
        if self.freeu is not None:     # absent, not null: ρ-only dicts stay as they were
            data["freeu"] = self.freeu.to_dict()
        if self.has_window:            # absent likewise for a schedule without a σ window
            data["sigma_lo"], data["sigma_hi"] = self.sigma_lo, self.sigma_hi
        if self.steps is not None:     # and for one on the sampler's own grid
            data["steps"] = self.steps.to_dict()
        return data

    @property
    def has_window(self) -> bool:
        return self.sigma_lo is not None

    @property
    def samples_alone(self) -> bool:
        """Its images cannot share a batch with other schedules': a σ window switches ρ per
        denoiser call, and a step grid is the whole batch's."""
        return self.has_window or self.steps is not None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TuningSchedule:
        """From a mapping with ``rho_bottom`` and optional ``rho_top``, ``shape``, ``gamma``,
        ``freeu`` (the four FreeU factors), ``sigma_lo`` and ``sigma_hi``, ``steps``.

        Raises ConfigurationError on a missing ``rho_bottom`` or an unknown key.
        """
        if "rho_bottom" not in data:
            raise ConfigurationError(f"a schedule needs 'rho_bottom'; got keys {sorted(data)}")
        unknown = set(data) - {"rho_bottom", "rho_top", "shape", "gamma", "freeu", "sigma_lo",
                               "sigma_hi", "steps"}
        if unknown:
            raise ConfigurationError(f"unknown schedule keys {sorted(unknown)}")
        return cls(
            rho_bottom=float(data["rho_bottom"]),
            rho_top=float(data.get("rho_top", 1.0)),
            shape=str(data.get("shape", "linear")),
            gamma=float(data.get("gamma", 1.0)),
            freeu=FreeU.from_dict(data["freeu"]) if data.get("freeu") is not None else None,
            sigma_lo=None if data.get("sigma_lo") is None else float(data["sigma_lo"]),
            sigma_hi=None if data.get("sigma_hi") is None else float(data["sigma_hi"]),
            steps=StepGrid.from_dict(data["steps"]) if data.get("steps") is not None else None,
        )


# The name before the schedule carried FreeU, a σ window and a step grid; scripts that
# import it keep working.
RhoSchedule = TuningSchedule
