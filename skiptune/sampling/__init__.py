"""σ-space ODE samplers with exact NFE, their σ grids, seeded noise and the ``sample`` call."""

from __future__ import annotations

from skiptune.sampling.sigmas import ddim_sigmas, karras_sigmas

__all__ = [
    "ddim_sigmas",
    "karras_sigmas",
]
