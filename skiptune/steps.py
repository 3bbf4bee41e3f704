"""The step schedule: which σ a sampler visits, described by three numbers.

A budget of NFE fixes the number of steps; where those steps go is a second lever beside
the skip factors. skiptune describes the grid as EDM's (Karras et al. 2022, eq. 5): an
exponent and two end points. Three numbers whatever the budget, so one description serves
every sampler and step count (warm starts carry across budgets and samplers), and every
value gives a strictly decreasing grid ending in 0: the NFE stays exact by construction.
Align Your Steps' log-σ knots would need one parameter per step and a different space per
budget and sampler. The exponent here is the σ grid's, never the skip factor ρ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skiptune.errors import ConfigurationError

__all__ = ["StepGrid"]

_KEYS = ("schedule_exponent", "sigma_min", "sigma_max")


@dataclass(frozen=True)
class StepGrid:
    """A σ grid: EDM's interpolation between ``sigma_max`` and ``sigma_min``, then 0.

    Args:
        schedule_exponent: EDM's ρ of eq. 5 (7 by default; larger packs steps toward σ_min).
        sigma_min: the last nonzero σ (> 0).
        sigma_max: the first σ, where sampling starts (> sigma_min).
    """

    schedule_exponent: float
    sigma_min: float
    sigma_max: float

    def __post_init__(self) -> None:
        values = [getattr(self, k) for k in _KEYS]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise ConfigurationError(f"a step grid needs finite numbers, got {self}")
        if self.schedule_exponent <= 0 or not 0 < self.sigma_min < self.sigma_max:
            raise ConfigurationError(
                f"a step grid needs schedule_exponent > 0 and 0 < sigma_min < sigma_max, got "
                f"{self.schedule_exponent:g}, {self.sigma_min:g}, {self.sigma_max:g}"
            )

    def check_inside(self, model_range: tuple[float, float]) -> StepGrid:
        """This grid, refused if its ends leave the model's trained (σ_min, σ_max)."""
        low, high = model_range
        # A little slack: ends typed from the model's printed range must pass.
        if self.sigma_min < low * (1 - 1e-6) or self.sigma_max > high * (1 + 1e-6):
            raise ConfigurationError(
                f"step grid σ {self.sigma_min:g} … {self.sigma_max:g} lies outside the model's "
                f"σ range {low:g} … {high:g}; pass ends inside it"
            )
        return self

    def to_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in _KEYS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepGrid:
        """From :meth:`to_dict`'s mapping; a missing or unknown key is a ConfigurationError."""
        if not isinstance(data, Mapping) or set(data) != set(_KEYS):
            raise ConfigurationError(
                f"a step grid needs exactly the keys {list(_KEYS)}, got {data!r}"
            )
        try:
            return cls(**{k: float(data[k]) for k in _KEYS})
        except (TypeError, ValueError) as e:
            raise ConfigurationError(f"a step grid needs numbers, got {data!r}") from e
