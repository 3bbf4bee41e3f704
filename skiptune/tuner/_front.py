"""Write the stored front: a study's tuned and baseline points, flagged against its group's."""

from __future__ import annotations

from collections.abc import Sequence

import optuna

from skiptune.storage import FrontRecord, Storage
from skiptune.tuner._config import SearchConfig, comparison_key
from skiptune.tuner._pareto import pareto_mask
from skiptune.tuner._space import schedule_from_params
from skiptune.tuner._summary import best_and_baseline

__all__ = ["front_flags", "front_points_of", "update_front"]


def front_points_of(study: optuna.Study, config: SearchConfig) -> list[FrontRecord]:
    """The study's tuned point (best complete trial) and baseline point, as stored records."""
    best, baseline = best_and_baseline(study.get_trials(deepcopy=False))
    key = comparison_key(
        config.objective_identity, num_samples=config.num_samples, seed=config.seed
    )
    baseline_value = None if baseline is None else float(baseline.value)
    points = []
    for kind, trial in (("tuned", best), ("baseline", baseline)):
        if trial is None:
            continue
        points.append(
            FrontRecord(
                study_group=config.group,
                study_name=study.study_name,
                kind=kind,
                sampler=config.sampler,
                nfe=config.nfe,
                value=float(trial.value),
                metric=config.metric,
                num_samples=config.num_samples,
                seed=config.seed,
                comparison_key=key,
                model_fingerprint=config.model_fingerprint,
                trial_number=trial.number,
                schedule=schedule_from_params(trial.params).to_dict(),
                baseline_value=baseline_value,
            )
        )
    return points

def front_flags(records: Sequence[FrontRecord]) -> list[bool]:
    """On-front flags, computed per (kind, comparison key): only alike measurements compete."""
    flags = [False] * len(records)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault((record.kind, record.comparison_key), []).append(i)
    for indices in groups.values():
        mask = pareto_mask([records[i] for i in indices])
        for i, keep in zip(indices, mask, strict=True):
            flags[i] = keep
    return flags

def update_front(storage: Storage, study: optuna.Study, config: SearchConfig) -> list[FrontRecord]:
    """Recompute ``study``'s points from its trials and store them with the group's front.

    Under the group's lock, so the trials read are the latest committed and two workers'
    updates cannot interleave; the write itself is one transaction.
    """
    with storage.lock(f"front:{config.group}"):
        points = front_points_of(study, config)
        return storage.update_front(
            group=config.group, study_name=study.study_name, points=points, on_front=front_flags
        )
