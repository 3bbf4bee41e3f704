"""Where a study stands and what it found, summarised from its trials."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from skiptune.schedule import TuningSchedule
from skiptune.tuner.results._labels import gain_established, measured_on
from skiptune.tuner.study import (
    TOTAL_ATTR,
    StudyConfig,
    ValidationResult,
    is_finished,
    role_of,
    schedule_from_params,
    validation_result,
    value_of,
)

__all__ = ["StudySummary", "best_and_baseline", "summarize"]


@dataclass(frozen=True)
class StudySummary:
    """Where one study stands and what it found.

    ``best_value`` and ``baseline_value`` are proxy values (lower is better) at
    ``num_samples`` images from noise seed ``seed``; ``None`` until measured. Once the study
    is validated (``validated``), they are the validated values instead, at
    ``validation_num_samples`` images on fresh seeds, and ``best_schedule`` is the best on
    those; ``search_best_value`` keeps the best value the search itself measured, and
    ``gain_low``/``gain_high`` bound the gain over ρ = 1 (paired bootstrap). Those values
    are on the first block of fresh seeds; the choice itself won races on
    ``validation_blocks`` such blocks (see ``tuner.search._racing``).
    """

    study_name: str
    group: str
    sampler: str
    nfe: int
    metric: str
    num_samples: int
    seed: int
    model_fingerprint: str
    model: str
    optimizer: str
    trials_total: int
    finished: int
    complete: int
    pruned: int
    failed: int                 # non-finite failures (counted as finished)
    running: int
    best_value: float | None
    best_schedule: TuningSchedule | None
    best_trial: int | None
    baseline_value: float | None
    seconds_per_trial: float | None   # mean evaluation time of complete trials
    # The best value of each kind of known point measured beside the baseline: "paper" (the
    # paper's ρ schedules), "freeu" (the model family's recommended FreeU values).
    known_values: dict[str, float] = field(default_factory=dict)
    validated: bool = False
    search_best_value: float | None = None
    validation_num_samples: int | None = None
    gain_low: float | None = None
    gain_high: float | None = None
    validation_level: float | None = None
    validation_seed: int | None = None    # validation image j from seed + j
    # The races behind the choice: seed blocks of validation_num_samples images each
    # (validation_blocks) decided it, and race_images images were measured for the races.
    validation_blocks: int | None = None
    race_images: int | None = None

    @property
    def measured_num_samples(self) -> int:
        """N behind ``best_value`` and ``baseline_value``: the validation's once validated."""
        if self.validated and self.validation_num_samples is not None:
            return self.validation_num_samples
        return self.num_samples

    @property
    def measured_seed(self) -> int:
        """The first noise seed behind ``best_value`` and ``baseline_value``."""
        return (self.validation_seed if self.validated and self.validation_seed is not None
                else self.seed)

    @property
    def measured_on(self) -> str:
        """``N = 128, seeds 64–191, validated``: what the values were measured on."""
        return measured_on(self.measured_num_samples, self.measured_seed,
                           validated=self.validated)

    @property
    def gain_established(self) -> bool | None:
        """Whether the validated gain's interval lies above 0; None before validation."""
        return gain_established(self.gain_low, self.gain_high)

    @property
    def improvement(self) -> float | None:
        """Relative improvement over the baseline: 1 − best / baseline (0.4 = 40% lower)."""
        if self.best_value is None or not self.baseline_value:
            return None
        return 1.0 - self.best_value / self.baseline_value

    @property
    def done(self) -> bool:
        return self.finished >= self.trials_total

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study_name,
            "group": self.group,
            "sampler": self.sampler,
            "nfe": self.nfe,
            "metric": self.metric,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "model_fingerprint": self.model_fingerprint,
            "model": self.model,
            "optimizer": self.optimizer,
            "trials_total": self.trials_total,
            "finished": self.finished,
            "complete": self.complete,
            "pruned": self.pruned,
            "failed": self.failed,
            "running": self.running,
            "best_value": self.best_value,
            "best_schedule": None if self.best_schedule is None else self.best_schedule.to_dict(),
            "best_trial": self.best_trial,
            "baseline_value": self.baseline_value,
            "improvement": self.improvement,
            "seconds_per_trial": self.seconds_per_trial,
            "known_values": dict(self.known_values),
            "validated": self.validated,
            "search_best_value": self.search_best_value,
            "validation_num_samples": self.validation_num_samples,
            "gain_low": self.gain_low,
            "gain_high": self.gain_high,
            "validation_level": self.validation_level,
            "validation_blocks": self.validation_blocks,
            "race_images": self.race_images,
            "validation_seed": self.validation_seed,
            "gain_established": self.gain_established,
            "measured_on": self.measured_on,
        }


def best_and_baseline(
    trials: Sequence[FrozenTrial],
) -> tuple[FrozenTrial | None, FrozenTrial | None]:
    """The best complete trial and the first complete baseline (ρ = 1) trial, or None."""
    complete = [
        t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
        and math.isfinite(t.value)
    ]
    best = min(complete, key=lambda t: (t.value, t.number), default=None)
    baselines = [t for t in complete if role_of(t) == "baseline"]
    baseline = min(baselines, key=lambda t: t.number, default=None)
    return best, baseline


def summarize(study: optuna.Study, config: StudyConfig) -> StudySummary:
    """Summarise ``study`` (searched with ``config``) from its trials."""
    trials = study.get_trials(deepcopy=False)
    best, baseline = best_and_baseline(trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    validation = validation_result(study)
    seconds = [
        float(t.user_attrs["seconds_total"]) for t in complete if "seconds_total" in t.user_attrs
    ]
    summary = StudySummary(
        study_name=study.study_name,
        group=config.group,
        sampler=config.sampler,
        nfe=config.nfe,
        metric=config.metric,
        num_samples=config.num_samples,
        seed=config.seed,
        model_fingerprint=config.model_fingerprint,
        model=config.model,
        optimizer=config.optimizer,
        trials_total=int(study.user_attrs.get(TOTAL_ATTR, config.trials)),
        finished=sum(is_finished(t) for t in trials),
        complete=len(complete),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        failed=sum(is_finished(t) and t.state == TrialState.FAIL for t in trials),
        running=sum(t.state == TrialState.RUNNING for t in trials),
        best_value=None if best is None else value_of(best),
        best_schedule=None if best is None else schedule_from_params(best.params),
        best_trial=None if best is None else best.number,
        baseline_value=None if baseline is None else value_of(baseline),
        seconds_per_trial=sum(seconds) / len(seconds) if seconds else None,
        known_values=_known_values(complete),
        search_best_value=None if best is None else value_of(best),
    )
    return summary if validation is None else _validated(summary, validation)


def _validated(summary: StudySummary, validation: ValidationResult) -> StudySummary:
    """``summary`` with the validated choice and values in place of the search's."""
    chosen, baseline = validation.chosen, validation.baseline
    return dataclasses.replace(
        summary,
        validated=True,
        best_value=chosen.value,
        best_schedule=schedule_from_params(chosen.params),
        best_trial=chosen.trial,
        baseline_value=None if baseline is None else baseline.value,
        validation_num_samples=validation.num_samples,
        gain_low=validation.gain_low,
        gain_high=validation.gain_high,
        validation_level=validation.level,
        validation_blocks=validation.blocks,
        race_images=validation.race_images,
        validation_seed=validation.seed,
    )


def _known_values(complete: Sequence[FrozenTrial]) -> dict[str, float]:
    """The best finite value of each queued known-point role ("paper", "freeu")."""
    known: dict[str, float] = {}
    for trial in complete:
        role = role_of(trial)
        if role in ("paper", "freeu") and trial.value is not None and math.isfinite(trial.value):
            known[role] = min(known.get(role, math.inf), value_of(trial))
    return known


def best_per_budget(summaries: Sequence[StudySummary]) -> dict[str, StudySummary]:
    """Study name → summary of the best of several studies of one (group, NFE) measured
    alike (metric, N, seeds, validated or not): where several samplers searched one budget,
    the best (sampler, steps, ρ) of it. A study alone in its budget, or without a value,
    is not named."""
    classes: dict[tuple[Any, ...], list[StudySummary]] = {}
    for s in summaries:
        if s.best_value is not None:
            alike = (s.group, s.nfe, s.metric, s.validated,
                     s.validation_num_samples if s.validated else s.num_samples, s.seed)
            classes.setdefault(alike, []).append(s)
    winners = [min(alike, key=lambda s: (s.best_value, s.sampler))
               for alike in classes.values() if len(alike) > 1]
    return {s.study_name: s for s in winners}
