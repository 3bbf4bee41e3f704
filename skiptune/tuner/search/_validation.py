"""Validation on fresh seeds: re-score a finished study's best schedules and ρ = 1.

The best of many noisy trials is biased low (the winner's curse): its value was measured on
the seeds that selected it. When a study reaches its total, its top-k distinct schedules and
its baseline are scored again at a larger N on seeds no trial used (``seed + last rung``
onward); the best on those values is the study's answer, and its gain over ρ = 1 comes with
a paired-bootstrap interval over samples.

Each candidate's result is its own study user attribute, written as soon as it is measured:
a killed validation resumes with the candidates still missing. The plan (which candidates,
the chosen one) is written last, so a reader sees a complete validation or none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from skiptune.errors import NonFiniteSampleError
from skiptune.objectives import bootstrap_indices, bootstrap_values
from skiptune.tuner.search._events import CandidateValidated, EventCallback
from skiptune.tuner.search._grids import GRID_SAMPLES, store_grids
from skiptune.tuner.search._objective import Objective
from skiptune.tuner.study import (
    VALIDATION_ATTR,
    StudyConfig,
    ValidationResult,
    ValidationSettings,
    candidate_attr,
    canonical_schedule,
    role_of,
    schedule_from_params,
    validation_result,
    value_of,
)

__all__ = ["candidates_of", "validate_study"]

def candidates_of(trials: Sequence[FrozenTrial], top_k: int) -> list[FrozenTrial]:
    """The first complete baseline, then the ``top_k`` best distinct schedules other than it."""
    complete = sorted(
        (t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
         and math.isfinite(t.value)),
        key=lambda t: (t.value, t.number),
    )
    baseline = min((t for t in complete if role_of(t) == "baseline"),
                   key=lambda t: t.number, default=None)
    chosen = [] if baseline is None else [baseline]
    seen = {canonical_schedule(t.params) for t in chosen}
    for trial in complete:
        if len(chosen) - (baseline is not None) >= top_k:
            break
        key = canonical_schedule(trial.params)
        if key not in seen:
            seen.add(key)
            chosen.append(trial)
    return chosen


def validate_study(
    storage: Any,
    study: optuna.Study,
    config: StudyConfig,
    objective: Objective,
    settings: ValidationSettings,
    *,
    worker: int = 0,
    emit: EventCallback | None = None,
) -> ValidationResult | None:
    """Validate ``study`` (at its total) unless its latest validation covers its candidates.

    Under the study's lock, so that several workers never validate a candidate twice: the
    first validates, the others wait and find every result stored. Then each validated
    candidate, ρ = 1 and each known point get a 4 × 4 sample grid on the first validation
    seeds, stored as an artifact of its trial (``settings.artifacts``; see
    :func:`store_grids`) unless it has one. Returns the result, or None when the study has no
    complete trial.
    """
    emit = emit or (lambda _event: None)
    num_samples = settings.samples_for(config.num_samples)
    seed = config.seed + config.num_samples          # seeds no trial used
    with storage.lock(f"study:{study.study_name}"):
        trials = study.get_trials(deepcopy=False)
        candidates = candidates_of(trials, settings.top_k)
        if not candidates:
            return None
        attrs = study.user_attrs
        names = [candidate_attr(t.params, num_samples, seed, settings.resamples)
                 for t in candidates]
        plan = {
            "num_samples": num_samples,
            "seed": seed,
            "resamples": settings.resamples,
            "level": float(settings.level),
            "candidates": names,
        }
        drawn: dict[int, torch.Tensor] = {}
        if attrs.get(VALIDATION_ATTR) != plan:
            drawn = _validate(study, config, objective, settings, candidates, names, plan,
                              worker=worker, emit=emit)
        # Grids need the model the objective samples (a ProxyObjective's); one built
        # otherwise has none to draw. Also on a rerun, which stores what an earlier could not.
        model = getattr(objective, "model", None)
        if settings.grids and model is not None:
            # The first validation seeds: fresh for every trial, the same for every candidate.
            store_grids(storage, study, config, model, [t.number for t in candidates],
                        seed=seed, artifacts=settings.artifacts, emit=emit, drawn=drawn)
    return validation_result(study)


def _validate(
    study: optuna.Study,
    config: StudyConfig,
    objective: Objective,
    settings: ValidationSettings,
    candidates: list[FrozenTrial],
    names: list[str],
    plan: dict[str, Any],
    *,
    worker: int,
    emit: EventCallback,
) -> dict[int, torch.Tensor]:
    """Measure each candidate not yet stored, then write the plan (call under the lock).

    Returns the first GRID_SAMPLES images of each candidate measured now, by trial number
    (none without grids): its sample grid, on the same seeds, costs no image more."""
    num_samples, seed, attrs = plan["num_samples"], plan["seed"], study.user_attrs
    validating = objective.for_validation(num_samples=num_samples, seed=seed)
    indices = bootstrap_indices(num_samples, resamples=settings.resamples, seed=config.seed)
    keep_images = GRID_SAMPLES if settings.grids and num_samples >= GRID_SAMPLES else 0
    drawn: dict[int, torch.Tensor] = {}
    for trial, name in zip(candidates, names, strict=True):
        if name in attrs:
            continue                    # measured before a kill, or by another run
        stored, images = _measure(validating, trial, indices, keep_images=keep_images)
        if images is not None:
            drawn[trial.number] = images
        study.set_user_attr(name, stored)
        emit(CandidateValidated(
            study_name=study.study_name, trial_number=trial.number, role=role_of(trial),
            schedule=schedule_from_params(trial.params).to_dict(),
            search_value=value_of(trial), value=stored["value"],
            num_samples=num_samples, worker=worker,
        ))
    study.set_user_attr(VALIDATION_ATTR, plan)
    return drawn


def _measure(
    validating: Objective, trial: FrozenTrial, indices: np.ndarray, *, keep_images: int
) -> tuple[dict[str, Any], torch.Tensor | None]:
    """One candidate's validated value and its bootstrap replicates (the indices are shared
    by every candidate of the study, which pairs them), and its first ``keep_images``
    images when it measured."""
    record: dict[str, Any] = {
        "trial": trial.number,
        "role": role_of(trial),
        "params": dict(trial.params),
        "search_value": value_of(trial),
        "value": None,
        "replicates": None,
    }
    try:
        evaluation = validating.evaluate(schedule_from_params(trial.params), keep_features=True,
                                         keep_images=keep_images)
    except NonFiniteSampleError:
        return record, None
    value = float(evaluation.value)
    if not math.isfinite(value):
        return record, None
    assert evaluation.features is not None      # asked for with keep_features=True
    replicates = bootstrap_values(evaluation.features, validating.score, indices)
    record.update(value=value, replicates=[float(v) for v in replicates])
    return record, evaluation.images


