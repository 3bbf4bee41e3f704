"""The search space as Optuna parameters, the schedules queued first, optimizers and pruner."""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import optuna

from skiptune._optuna import quiet_experimental
from skiptune.errors import ConfigurationError
from skiptune.freeu import FreeU
from skiptune.schedule import TuningSchedule
from skiptune.steps import StepGrid
from skiptune.tuner.study import OPTIMIZERS, SearchSpace, StudyConfig

__all__ = [
    "PAPER_SCHEDULES",
    "STEP_PARAMS",
    "grid_size",
    "inside",
    "make_pruner",
    "make_sampler",
    "queued_schedules",
    "steps_params",
    "steps_ranges",
    "suggest_schedule",
]

# Schedules Ma et al. (ICML 2024, arXiv 2402.15170) report as best, (rho_bottom, rho_top):
# EDM Heun 9 NFE, EDM UniPC 9 NFE, consistency-distilled EDM at 1 step.
PAPER_SCHEDULES: tuple[tuple[float, float], ...] = ((0.55, 1.0), (0.68, 1.0), (0.91, 0.96))


@contextmanager
def _enqueued_values_allowed() -> Iterator[None]:
    # The baseline ρ = 1 is measured even when the user's bounds exclude 1; Optuna then warns
    # that the enqueued value is out of range, and uses it, which is what we want.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Fixed parameter")
        yield


def suggest_schedule(trial: optuna.Trial, space: SearchSpace) -> TuningSchedule:
    """Ask ``trial`` for a schedule in ``space``.

    ρ: rho_bottom, rho_top, shape, gamma (power only); a fixed rho_top is a one-value
    parameter, so every trial records its full schedule. FreeU: b1, b2 (in ``freeu_b``) and
    s1, s2 (in ``freeu_s``). Steps: steps_exponent, steps_sigma_min, steps_sigma_max (log
    scale; the ranges keep every grid decreasing). A space without ρ keeps ρ = 1.
    """
    with _enqueued_values_allowed():
        schedule = TuningSchedule.identity()
        if space.searches_rho:
            rho_bottom = trial.suggest_float("rho_bottom", *space.rho_bottom)
            rho_top = trial.suggest_float("rho_top", *space.rho_top_bounds())
            shape = trial.suggest_categorical("shape", list(space.shapes))
            gamma = (
                trial.suggest_float("gamma", *space.gamma, log=True) if shape == "power" else 1.0
            )
            schedule = TuningSchedule(
                rho_bottom=rho_bottom, rho_top=rho_top, shape=str(shape), gamma=gamma,
                **_suggest_window(trial, space),
            )
        if space.searches_freeu:
            freeu = FreeU(
                b1=trial.suggest_float("b1", *space.freeu_b),
                b2=trial.suggest_float("b2", *space.freeu_b),
                s1=trial.suggest_float("s1", *space.freeu_s),
                s2=trial.suggest_float("s2", *space.freeu_s),
            )
            schedule = replace(schedule, freeu=freeu)
        if space.searches_steps:
            schedule = replace(schedule, steps=_suggest_steps(trial, space))
    return schedule


# Trial parameter → StepGrid field (the parameter names are also the SearchSpace ranges').
STEP_PARAMS = {"steps_exponent": "schedule_exponent", "steps_sigma_min": "sigma_min",
               "steps_sigma_max": "sigma_max"}


def _suggest_steps(trial: optuna.Trial, space: SearchSpace) -> StepGrid:
    """The σ grid's exponent and ends, each on a log scale within the resolved ranges."""
    return StepGrid(**{field: trial.suggest_float(param, *steps_ranges(space)[param], log=True)
                       for param, field in STEP_PARAMS.items()})


def steps_ranges(space: SearchSpace) -> dict[str, tuple[float, float]]:
    """Each step parameter's (low, high); the search resolves the σ ranges first."""
    if space.steps_sigma_min is None or space.steps_sigma_max is None:
        raise ConfigurationError(
            "the step space's σ ranges are resolved against the model before a search; "
            "pass steps_sigma_min and steps_sigma_max"
        )
    return {"steps_exponent": space.steps_exponent, "steps_sigma_min": space.steps_sigma_min,
            "steps_sigma_max": space.steps_sigma_max}


def steps_params(grid: StepGrid) -> dict[str, float]:
    """The trial parameters of ``grid``: the names ``suggest_schedule`` asks for."""
    return {param: float(getattr(grid, field)) for param, field in STEP_PARAMS.items()}


def _suggest_window(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """σ_lo and σ_hi in ``space.sigma_window`` (log scale), as TuningSchedule's keywords."""
    if space.sigma_window is None:
        return {}
    ends = sorted(trial.suggest_float(name, *space.sigma_window, log=True)
                  for name in ("sigma_lo", "sigma_hi"))
    # Two equal ends make no window; the whole range (ρ at every σ of it) stands for it.
    return {"sigma_lo": ends[0], "sigma_hi": ends[1]} if ends[0] < ends[1] else {
        "sigma_lo": space.sigma_window[0], "sigma_hi": space.sigma_window[1]}


def inside(value: float, bounds: tuple[float, float]) -> bool:
    """``value`` lies within ``bounds`` (inclusive), allowing for float rounding."""
    return bounds[0] - 1e-12 <= value <= bounds[1] + 1e-12


def queued_schedules(space: SearchSpace) -> list[tuple[dict[str, Any], str]]:
    """(params, role) of the trials queued before any search: the baseline, then known points.

    The baseline (ρ = 1, FreeU neutral) is always measured, on the same seeds as every
    trial; for ρ with the first listed shape that has no exponent (any shape gives all ones
    when both ends are 1). Known points: the paper's linear ρ schedules where they lie inside
    the space (role ``paper``), and ``space.freeu_known`` (role ``freeu``, the model
    family's recommended FreeU values, with ρ = 1). A step space measures every one of them
    on the sampler's own grid (``space.steps_known``): the baseline is today's sampling.
    """
    rho_one: dict[str, Any] = {}
    if space.searches_rho:
        plain = [s for s in space.shapes if s != "power"]
        rho_one = {"rho_bottom": 1.0, "rho_top": 1.0, "shape": plain[0] if plain else "power"}
        if not plain:
            rho_one["gamma"] = 1.0
    neutral = {"b1": 1.0, "b2": 1.0, "s1": 1.0, "s2": 1.0} if space.searches_freeu else {}
    if space.sigma_window is not None:
        # Known points act at every σ of the window's range, as they were published.
        neutral = {**neutral, "sigma_lo": space.sigma_window[0],
                   "sigma_hi": space.sigma_window[1]}
    own_grid: dict[str, float] = {}
    if space.searches_steps:
        if space.steps_known is None:
            raise ConfigurationError(
                "the step space's known grid is resolved against the model before a search; "
                "pass steps_known"
            )
        own_grid = steps_params(StepGrid(*space.steps_known))
        neutral = {**neutral, **own_grid}
    queued = [({**rho_one, **neutral}, "baseline")]
    if space.searches_rho and "linear" in space.shapes:
        for bottom, top in PAPER_SCHEDULES:
            if inside(bottom, space.rho_bottom) and inside(top, space.rho_top_bounds()):
                paper = {"rho_bottom": bottom, "rho_top": top, "shape": "linear"}
                queued.append(({**paper, **neutral}, "paper"))
    if space.searches_freeu and space.freeu_known is not None:
        known = dict(zip(("b1", "b2", "s1", "s2"), space.freeu_known, strict=True))
        queued.append(({**rho_one, **known, **own_grid}, "freeu"))
    return queued


def _grid(space: SearchSpace) -> dict[str, list[Any]]:
    def axis(low: float, high: float) -> list[float]:
        count = math.floor((high - low) / space.grid_step + 1e-9) + 1
        return [round(low + i * space.grid_step, 10) for i in range(count)]

    return {
        "rho_bottom": axis(*space.rho_bottom),
        "rho_top": axis(*space.rho_top_bounds()) if not space.rho_top_fixed else [space.rho_top],
        "shape": list(space.shapes),
    }


def grid_size(space: SearchSpace) -> int:
    """How many points the ``grid`` optimizer visits."""
    return math.prod(len(values) for values in _grid(space).values())


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler without its ``study.stop()`` at exhaustion, which works only in optimize().

    The search loop stops by itself: the grid optimizer's total is capped at the grid size.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def sampler_seed(seed: int, *, worker: int = 0, history: int = 0) -> int:
    """The optimizer's seed for the next proposal: a hash of the search seed, the worker and
    the number of trials the study already holds, in [0, 2³²).

    Seeding by the history, not once per process, makes a resumed study continue its search
    (the same history gives the same next proposal as an uninterrupted run) instead of
    replaying the proposals of its first run, which re-measured a trial at each resume.
    """
    digest = hashlib.sha256(f"skiptune-sampler\n{seed}\n{worker}\n{history}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def make_sampler(
    config: StudyConfig, *, worker: int = 0, history: int = 0
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for ``config.optimizer``, seeded by :func:`sampler_seed`.

    ``history`` is the number of trials in the study when the next trial is asked; the
    search makes a sampler per ask. TPE is multivariate (ρ_bottom and ρ_top interact) with
    grouped conditional parameters (gamma exists for the power shape only) and a constant
    liar, so that parallel workers do not all try the same point.
    """
    seed = sampler_seed(config.seed, worker=worker, history=history)
    name = config.optimizer
    if name == "tpe":
        with quiet_experimental():  # group=True
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=True,
                constant_liar=True,
                n_startup_trials=max(4, min(10, config.trials // 3)),
            )
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError as e:
            raise ConfigurationError(
                "the cmaes optimizer needs the cmaes package: pip install cmaes"
            ) from e
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        # A scrambled Sobol sequence: one scrambling per search (not per ask, which would
        # break the sequence's spread); Optuna counts the points drawn in the study itself.
        with quiet_experimental():
            return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True,
                                              seed=sampler_seed(config.seed, worker=worker),
                                              warn_independent_sampling=False,
                                              warn_asynchronous_seeding=False)
    if name == "grid":
        return _AskTellGridSampler(_grid(config.space), seed=seed)
    raise ConfigurationError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def make_pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    """Successive halving over the objective's rungs of N, or no pruning.

    A trial goes past a rung only if it is among the best third of the trials that reached
    that rung. Successive halving fits rungs of growing N (one aggregate value per rung);
    Wilcoxon's test wants a value per instance, which a Fréchet distance has not.
    """
    if not config.pruning or len(config.rungs) < 2:
        return optuna.pruners.NopPruner()
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=config.rungs[0], reduction_factor=3, min_early_stopping_rate=0
    )
