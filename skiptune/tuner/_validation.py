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

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from skiptune._checks import is_whole
from skiptune.errors import ConfigurationError, NonFiniteSampleError
from skiptune.objectives import bootstrap_indices, bootstrap_values, paired_gain_interval
from skiptune.tuner._config import SearchConfig
from skiptune.tuner._events import CandidateValidated, EventCallback
from skiptune.tuner._schema import role_of, value_of
from skiptune.tuner._space import schedule_from_params

__all__ = [
    "VALIDATION_ATTR",
    "ValidationResult",
    "ValidationSettings",
    "validate_study",
    "validation_result",
]

VALIDATION_ATTR = "skiptune_validation"        # study user attribute: the finished validation
_CANDIDATE_PREFIX = "skiptune_validated:"      # study user attribute per validated candidate


@dataclass(frozen=True)
class ValidationSettings:
    """How a finished study is validated.

    Args:
        top_k: distinct best schedules re-scored beside ρ = 1.
        num_samples: images per candidate; None: 4 × the last rung. Never below the last rung.
        resamples: paired bootstrap draws for the gain's interval.
        level: the interval's coverage.
        enabled: False skips validation (a later run without it validates the study).
    """

    top_k: int = 3
    num_samples: int | None = None
    resamples: int = 200
    level: float = 0.95
    enabled: bool = True

    def __post_init__(self) -> None:
        if not is_whole(self.top_k) or self.top_k < 1:
            raise ConfigurationError(
                f"--validate-top must be a whole number ≥ 1, got {self.top_k!r}; pass e.g. 3"
            )
        if self.num_samples is not None and (not is_whole(self.num_samples)
                                             or self.num_samples < 2):
            raise ConfigurationError(
                f"--validation-n must be a whole number ≥ 2, got {self.num_samples!r}"
            )
        if not is_whole(self.resamples) or self.resamples < 1:
            raise ConfigurationError(
                f"resamples must be a whole number ≥ 1, got {self.resamples!r}"
            )
        if not 0.0 < float(self.level) < 1.0:
            raise ConfigurationError(
                f"the interval's level must lie in (0, 1), got {self.level}"
            )

    def samples_for(self, config: SearchConfig) -> int:
        """N of the validation of ``config``'s study; refuses one below its last rung."""
        last = config.num_samples
        n = 4 * last if self.num_samples is None else int(self.num_samples)
        if n < last:
            raise ConfigurationError(
                f"--validation-n {n} is smaller than the last rung ({last}): validation must "
                f"measure at least as many images as a trial; pass --validation-n {4 * last}"
            )
        return n


@dataclass(frozen=True)
class ValidatedCandidate:
    trial: int
    role: str                       # "baseline", "paper", "search"...
    params: dict[str, Any]
    search_value: float
    value: float | None             # None: its samples were non-finite at validation N


@dataclass(frozen=True)
class ValidationResult:
    """A study's validation: every candidate, the chosen one, and the gain over ρ = 1."""

    num_samples: int
    seed: int                       # sample j of the validation from seed + j
    level: float
    candidates: tuple[ValidatedCandidate, ...]
    chosen: ValidatedCandidate
    baseline: ValidatedCandidate | None
    gain: float | None              # 1 − chosen / baseline on the validation seeds
    gain_low: float | None
    gain_high: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_samples": self.num_samples,
            "seed": self.seed,
            "level": self.level,
            "chosen_trial": self.chosen.trial,
            "search_value": self.chosen.search_value,
            "gain": self.gain,
            "gain_low": self.gain_low,
            "gain_high": self.gain_high,
            "candidates": [
                {"trial": c.trial, "role": c.role, "search_value": c.search_value,
                 "value": c.value}
                for c in self.candidates
            ],
        }


def _canonical(params: dict[str, Any]) -> str:
    return json.dumps(schedule_from_params(params).to_dict(), sort_keys=True)


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
    seen = {_canonical(t.params) for t in chosen}
    for trial in complete:
        if len(chosen) - (baseline is not None) >= top_k:
            break
        key = _canonical(trial.params)
        if key not in seen:
            seen.add(key)
            chosen.append(trial)
    return chosen


def _candidate_attr(params: dict[str, Any], num_samples: int, seed: int, resamples: int) -> str:
    text = f"{_canonical(params)}\n{num_samples}\n{seed}\n{resamples}"
    return _CANDIDATE_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]


def validate_study(
    storage: Any,
    study: optuna.Study,
    config: SearchConfig,
    objective: Any,                  # a ProxyObjective (for_validation, evaluate, score)
    settings: ValidationSettings,
    *,
    worker: int = 0,
    emit: EventCallback | None = None,
) -> ValidationResult | None:
    """Validate ``study`` (at its total) unless its latest validation covers its candidates.

    Under the study's lock, so that several workers never validate a candidate twice: the
    first validates, the others wait and find every result stored. Returns the result, or
    None when the study has no complete trial.
    """
    emit = emit or (lambda _event: None)
    num_samples = settings.samples_for(config)
    seed = config.seed + config.num_samples          # seeds no trial used
    with storage.lock(f"study:{study.study_name}"):
        trials = study.get_trials(deepcopy=False)
        candidates = candidates_of(trials, settings.top_k)
        if not candidates:
            return None
        attrs = study.user_attrs
        names = [_candidate_attr(t.params, num_samples, seed, settings.resamples)
                 for t in candidates]
        plan = {
            "num_samples": num_samples,
            "seed": seed,
            "resamples": settings.resamples,
            "level": float(settings.level),
            "candidates": names,
        }
        if attrs.get(VALIDATION_ATTR) == plan:
            return validation_result(study)
        validating = objective.for_validation(num_samples=num_samples, seed=seed)
        indices = bootstrap_indices(num_samples, resamples=settings.resamples, seed=config.seed)
        for trial, name in zip(candidates, names, strict=True):
            if name in attrs:
                continue                    # measured before a kill, or by another run
            stored = _measure(validating, trial, indices)
            study.set_user_attr(name, stored)
            emit(CandidateValidated(
                study_name=study.study_name, trial_number=trial.number, role=role_of(trial),
                schedule=schedule_from_params(trial.params).to_dict(),
                search_value=value_of(trial), value=stored["value"],
                num_samples=num_samples, worker=worker,
            ))
        study.set_user_attr(VALIDATION_ATTR, plan)
    return validation_result(study)


def _measure(validating: Any, trial: FrozenTrial, indices: np.ndarray) -> dict[str, Any]:
    """One candidate's validated value and its bootstrap replicates (the indices are shared
    by every candidate of the study, which pairs them)."""
    record: dict[str, Any] = {
        "trial": trial.number,
        "role": role_of(trial),
        "params": dict(trial.params),
        "search_value": value_of(trial),
        "value": None,
        "replicates": None,
    }
    try:
        evaluation = validating.evaluate(schedule_from_params(trial.params), keep_features=True)
    except NonFiniteSampleError:
        return record
    value = float(evaluation.value)
    if not math.isfinite(value):
        return record
    replicates = bootstrap_values(evaluation.features, validating.score, indices)
    record.update(value=value, replicates=[float(v) for v in replicates])
    return record


def validation_result(study: optuna.Study | Any) -> ValidationResult | None:
    """The study's latest complete validation, from its user attributes, or None."""
    attrs: dict[str, Any] = study.user_attrs
    plan = attrs.get(VALIDATION_ATTR)
    if not plan:
        return None
    found = [attrs.get(name) for name in plan["candidates"]]
    stored: list[dict[str, Any]] = [s for s in found if s is not None]
    if len(stored) < len(found):
        return None
    candidates = tuple(
        ValidatedCandidate(trial=int(s["trial"]), role=str(s["role"]), params=dict(s["params"]),
                           search_value=float(s["search_value"]),
                           value=None if s["value"] is None else float(s["value"]))
        for s in stored
    )
    measured = [c for c in candidates if c.value is not None]
    if not measured:
        return None
    chosen = min(measured, key=lambda c: (c.value, c.search_value, c.trial))
    by_trial = {int(s["trial"]): s for s in stored}
    baseline = next((c for c in candidates if c.role == "baseline"), None)
    gain = low = high = None
    if baseline is not None and baseline.value:
        gain = 1.0 - chosen.value / baseline.value          # type: ignore[operator]
        mine, theirs = by_trial[chosen.trial]["replicates"], by_trial[baseline.trial]["replicates"]
        if mine is not None and theirs is not None:
            low, high = paired_gain_interval(np.array(mine), np.array(theirs),
                                             level=float(plan["level"]))
    return ValidationResult(
        num_samples=int(plan["num_samples"]), seed=int(plan["seed"]),
        level=float(plan["level"]), candidates=candidates, chosen=chosen, baseline=baseline,
        gain=gain, gain_low=low, gain_high=high,
    )

