"""Warm starts across budgets and samplers: a new study first tries its neighbours' best.

The best ρ moves smoothly with the step budget (Ma et al. report it rising toward 1 as NFE
grows), so the validated choice of the same model's 7-NFE study is a strong first guess
at 9 NFE; another sampler's choice at the same budget is one too (ρ and the σ grid mean
the same to every sampler). Queued once, nearest budget first, like the baseline and the
paper's schedules.
"""

from __future__ import annotations

import re
from typing import Any

import optuna

from skiptune.tuner.search._space import STEP_PARAMS, inside, steps_ranges
from skiptune.tuner.study import CONFIG_ATTR, SearchSpace, StudyConfig, validation_result

__all__ = ["warm_schedules"]


def params_in_space(params: dict[str, Any], space: SearchSpace) -> dict[str, Any] | None:
    """``params`` as this space's parameters, or None where the space cannot hold them."""
    wanted: dict[str, Any] = {}
    if space.searches_rho:
        shape = params.get("shape", "linear")
        if shape not in space.shapes:
            return None
        bottom, top = float(params.get("rho_bottom", 1.0)), float(params.get("rho_top", 1.0))
        if not (inside(bottom, space.rho_bottom) and inside(top, space.rho_top_bounds())):
            return None
        wanted.update(rho_bottom=bottom, rho_top=top, shape=shape)
        if shape == "power":
            gamma = float(params.get("gamma", 1.0))
            if not inside(gamma, space.gamma):
                return None
            wanted["gamma"] = gamma
    windowed = "sigma_lo" in params and "sigma_hi" in params
    if space.sigma_window is not None:
        lo, hi = (float(params["sigma_lo"]), float(params["sigma_hi"])) if windowed else (
            space.sigma_window)
        if not (inside(lo, space.sigma_window) and inside(hi, space.sigma_window)):
            return None
        wanted.update(sigma_lo=lo, sigma_hi=hi)
    elif windowed:
        return None                       # a windowed choice is not an every-σ schedule
    if space.searches_freeu:
        if not all(k in params for k in ("b1", "b2", "s1", "s2")):
            return None
        freeu = {k: float(params[k]) for k in ("b1", "b2", "s1", "s2")}
        if not all(inside(freeu[k], space.freeu_b) for k in ("b1", "b2")) or not all(
            inside(freeu[k], space.freeu_s) for k in ("s1", "s2")
        ):
            return None
        wanted.update(freeu)
    elif any(k in params for k in ("b1", "b2", "s1", "s2")):
        return None                       # a FreeU choice is not a ρ-only schedule
    grid = {k: float(params[k]) for k in STEP_PARAMS if k in params}
    if space.searches_steps:
        ranges = steps_ranges(space)
        if len(grid) != len(STEP_PARAMS) or not all(inside(grid[k], ranges[k]) for k in grid):
            return None
        wanted.update(grid)
    elif grid:
        return None                       # a searched grid is not the sampler's own
    return wanted


def warm_schedules(optuna_storage: Any, config: StudyConfig) -> list[tuple[dict[str, Any], str]]:
    """(params, source study) of the validated bests of the same model's other studies.

    Same group and weights, any sampler but not this study; nearest budget first (the lower
    one on a tie, the same sampler before others); only schedules the study's space can
    hold, each once.
    """
    pattern = re.compile(rf"skiptune-{re.escape(config.group)}-(\w+)-nfe(\d+)")
    found: list[tuple[int, int, bool, dict[str, Any], str]] = []
    for name in optuna.get_all_study_names(optuna_storage):
        match = pattern.fullmatch(name)
        if match is None or name == config.study_name:
            continue
        study = optuna.load_study(study_name=name, storage=optuna_storage)
        stored = study.user_attrs.get(CONFIG_ATTR) or {}
        if stored.get("model_fingerprint") != config.model_fingerprint:
            continue
        result = validation_result(study)
        if result is None or result.chosen.role == "baseline":
            continue                      # ρ = 1 is queued anyway
        params = params_in_space(result.chosen.params, config.space)
        if params is not None:
            nfe = int(match.group(2))
            other = match.group(1) != config.sampler
            found.append((abs(nfe - config.nfe), nfe, other, params, name))
    queued: list[tuple[dict[str, Any], str]] = []
    for *_order, params, name in sorted(found, key=lambda f: (f[0], f[1], f[2], f[4])):
        if all(params != p for p, _ in queued):
            queued.append((params, name))
    return queued
