"""Write the stored front: a study's tuned and baseline points, flagged against its group's
(each sampler its own front: ``skiptune.tuner.results.front_flags``)."""

from __future__ import annotations

from typing import Any

import optuna

from skiptune.storage import FrontRecord, Storage
from skiptune.tuner.results import best_and_baseline, front_flags
from skiptune.tuner.study import (
    StudyConfig,
    comparison_key,
    schedule_from_params,
    validation_result,
    value_of,
)

__all__ = ["front_flags", "front_points_of", "update_front"]


def front_points_of(study: optuna.Study, config: StudyConfig) -> list[FrontRecord]:
    """The study's tuned point and baseline point, as stored records.

    Validated values where the study has them (the best on fresh seeds, flagged with how it
    was validated); otherwise the best complete trial and the baseline as the search measured.
    """
    # (kind, trial number, params, value, search value) of each point.
    points: list[tuple[str, int, dict[str, Any], float, float]] = []
    validation = validation_result(study)
    about: dict[str, Any] | None = None
    if validation is None:
        best, baseline = best_and_baseline(study.get_trials(deepcopy=False))
        for kind, trial in (("tuned", best), ("baseline", baseline)):
            if trial is not None:
                value = value_of(trial)
                points.append((kind, trial.number, trial.params, value, value))
        key = comparison_key(
            config.objective_identity, num_samples=config.num_samples, seed=config.seed
        )
    else:
        for kind, candidate in (("tuned", validation.chosen), ("baseline", validation.baseline)):
            if candidate is not None and candidate.value is not None:
                points.append((kind, candidate.trial, candidate.params, candidate.value,
                               candidate.search_value))
        # Validated values are measured at the validation's N and seeds: only alike compete.
        key = comparison_key(
            config.objective_identity, num_samples=config.num_samples, seed=config.seed,
            validation=(validation.num_samples, validation.seed),
        )
        about = {
            "num_samples": validation.num_samples, "seed": validation.seed,
            "level": validation.level, "gain": validation.gain,
            "gain_low": validation.gain_low, "gain_high": validation.gain_high,
        }
    baseline_value = next((value for kind, *_, value, _ in points if kind == "baseline"), None)
    return [
        FrontRecord(
            study_group=config.group,
            study_name=study.study_name,
            kind=kind,
            sampler=config.sampler,
            nfe=config.nfe,
            value=value,
            metric=config.metric,
            num_samples=config.num_samples,
            seed=config.seed,
            comparison_key=key,
            model_fingerprint=config.model_fingerprint,
            trial_number=number,
            schedule=schedule_from_params(params).to_dict(),
            baseline_value=baseline_value,
            validation=None if about is None else {**about, "search_value": searched},
        )
        for kind, number, params, value, searched in points
    ]

def update_front(storage: Storage, study: optuna.Study, config: StudyConfig) -> list[FrontRecord]:
    """Recompute ``study``'s points from its trials and store them with the group's front.

    Under the group's lock, so the trials read are the latest committed and two workers'
    updates cannot interleave; the write itself is one transaction.
    """
    with storage.lock(f"front:{config.group}"):
        points = front_points_of(study, config)
        return storage.update_front(
            group=config.group, study_name=study.study_name, points=points, on_front=front_flags
        )
