"""One-step generators kept as EDM networks: the image is D(σ_init·z; σ_init).

Diff-Instruct (Luo et al. 2023) and SiD (Zhou et al. 2024) distil a diffusion model into a
generator G that is a copy of the teacher: the same EDM preconditioner class, kwargs and
layout, saved as an EDM snapshot (``dict(ema=G)`` in SiD, ``dict(ema=G, Sg=…)`` in
Diff-Instruct). G is run once, at a fixed σ_init chosen for training (SiD's ``sigma_G``,
2.5 by default; Diff-Instruct's ``init_sigma``, 1.0 in its README): ``G(σ_init·z, σ_init)``.
Nothing in the snapshot records σ_init or that it is a generator, so the user says so with
the load option ``one_step_sigma``; the model then samples one step from σ_init.
"""

from __future__ import annotations

import math
from typing import Any

from skiptune.errors import ConfigurationError
from skiptune.models._base import TunableModel

__all__ = ["as_one_step_generator", "check_one_step_sigma"]

_EXAMPLE = "e.g. one_step_sigma 2.5 for SiD's generators"


def check_one_step_sigma(value: Any) -> float | None:
    """``value`` as a float, or None when not given; ConfigurationError for anything but a
    finite number > 0 (checked before the model is loaded)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ConfigurationError(
            f"one_step_sigma must be a finite σ > 0 (the noise level the generator was trained "
            f"to start from), got {value!r}; pass {_EXAMPLE}",
            field="one_step_sigma",
        )
    return float(value)


def as_one_step_generator(model: TunableModel, sigma: float) -> TunableModel:
    """``model`` as a one-step generator started at σ_init = ``sigma``.

    Its ``sigma_max`` becomes σ_init, so that a one-step Karras grid is [σ_init, 0] and the
    sample is D(σ_init·z; σ_init); ``default_sampler`` becomes ``"consistency"`` and
    ``metadata["one_step_sigma"]`` records σ_init. σ_init must lie inside the σ range the
    network was trained on, above ``sigma_min``.
    """
    if not model.sigma_min < sigma <= model.sigma_max:
        raise ConfigurationError(
            f"one_step_sigma {sigma:g} lies outside the σ range of {model.source or 'the model'} "
            f"({model.sigma_min:g} < σ ≤ {model.sigma_max:g}); pass the σ the generator was "
            f"trained to start from, {_EXAMPLE}",
            field="one_step_sigma",
        )
    model.sigma_max = sigma
    model.default_sampler = "consistency"
    model.metadata["one_step_sigma"] = sigma
    return model
