"""Validation on fresh seeds: the search's races, and the final one at its total.

The best of many noisy trials is biased low (the winner's curse): its value was measured on
the seeds that selected it. So the search races (``_racing``): at checkpoints of finished
trials and at its total, the incumbent (ρ = 1 at first) and the best schedules not yet raced
are compared on seed blocks no trial used (block 0 from ``seed + last rung`` onward, block b
``b · N`` seeds later); the incumbent is the study's answer. Its gain over ρ = 1 comes with a
paired-bootstrap interval over the samples of block 0, which both always have.

Each measurement (a candidate on one block) is its own study user attribute, written as soon
as it is measured, and the race state after each race is another: a killed race resumes with
the measurements still missing and decides as an uninterrupted one would. The plan (which
candidates, the chosen one) is written last, so a reader sees a complete validation or none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from skiptune.errors import NonFiniteSampleError
from skiptune.objectives import bootstrap_indices, bootstrap_values
from skiptune.tuner.search._events import CandidateValidated, EventCallback
from skiptune.tuner.search._grids import GRID_SAMPLES, store_grids
from skiptune.tuner.search._objective import Objective
from skiptune.tuner.search._racing import (
    RaceState,
    SeedBlocks,
    finite_or_inf,
    race,
    race_checkpoints,
    race_number,
)
from skiptune.tuner.study import (
    RACE_ATTR,
    VALIDATION_ATTR,
    StudyConfig,
    ValidationResult,
    ValidationSettings,
    candidate_attr,
    canonical_schedule,
    is_finished,
    role_of,
    schedule_from_params,
    validation_result,
    value_of,
)

__all__ = ["candidates_of", "race_if_due", "validate_study"]


def candidates_of(trials: Sequence[FrozenTrial]) -> tuple[FrozenTrial | None, list[FrozenTrial]]:
    """(the first complete baseline, every distinct complete schedule best search value first)."""
    complete = sorted(
        (t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
         and math.isfinite(t.value)),
        key=lambda t: (t.value, t.number),
    )
    baseline = min((t for t in complete if role_of(t) == "baseline"),
                   key=lambda t: t.number, default=None)
    seen: set[str] = set()
    ranked = []
    for trial in complete:
        key = canonical_schedule(trial.params)
        if key not in seen:
            seen.add(key)
            ranked.append(trial)
    return baseline, ranked


class _Race:
    """One race of ``study`` on its stored measurements (call under the race lock)."""

    def __init__(self, study: optuna.Study, config: StudyConfig, objective: Objective,
                 settings: ValidationSettings, *, worker: int, emit: EventCallback) -> None:
        self.study, self.config, self.objective = study, config, objective
        self.settings, self.worker, self.emit = settings, worker, emit
        size = settings.samples_for(config.num_samples)
        self.blocks = SeedBlocks(first_seed=config.seed + config.num_samples, size=size)
        self.attrs = dict(study.user_attrs)
        self.indices = bootstrap_indices(size, resamples=settings.resamples, seed=config.seed)
        self.keep_images = GRID_SAMPLES if settings.grids and size >= GRID_SAMPLES else 0
        self.drawn: dict[int, torch.Tensor] = {}
        self._validating: dict[int, Objective] = {}

    @property
    def identity(self) -> dict[str, Any]:
        """What a stored race state holds for: another block size or top-k starts afresh."""
        return {"num_samples": self.blocks.size, "seed": self.blocks.first_seed,
                "resamples": self.settings.resamples, "top_k": self.settings.top_k,
                "max_blocks": self.settings.max_blocks}

    def state(self) -> RaceState:
        stored = self.attrs.get(RACE_ATTR) or {}
        if stored.get("identity") != self.identity:
            return RaceState()
        return RaceState.from_dict(stored)

    def name(self, trial: FrozenTrial, block: int) -> str:
        return candidate_attr(trial.params, self.blocks.size, self.blocks.seed(block),
                              self.settings.resamples)

    def measure(self, trial: FrozenTrial, block: int) -> float:
        """The trial's value on seed block ``block``: stored, or measured and stored now."""
        name = self.name(trial, block)
        if name not in self.attrs:
            record = self._measure(trial, block)
            self.study.set_user_attr(name, record)
            self.attrs[name] = record
            self.emit(CandidateValidated(
                study_name=self.study.study_name, trial_number=trial.number,
                role=role_of(trial), schedule=schedule_from_params(trial.params).to_dict(),
                search_value=value_of(trial), value=record["value"],
                num_samples=self.blocks.size, block=block, worker=self.worker,
            ))
        return finite_or_inf(self.attrs[name]["value"])

    def _measure(self, trial: FrozenTrial, block: int) -> dict[str, Any]:
        """One candidate's value on one block; on block 0 also its bootstrap replicates (the
        indices are shared by every candidate, which pairs them) and its grid's images."""
        if block not in self._validating:
            self._validating[block] = self.objective.for_validation(
                num_samples=self.blocks.size, seed=self.blocks.seed(block))
        validating = self._validating[block]
        record: dict[str, Any] = {
            "trial": trial.number, "role": role_of(trial), "params": dict(trial.params),
            "search_value": value_of(trial), "block": block, "value": None, "replicates": None,
        }
        first = block == 0
        try:
            evaluation = validating.evaluate(
                schedule_from_params(trial.params), keep_features=first,
                keep_images=self.keep_images if first else 0)
        except NonFiniteSampleError:
            return record
        value = float(evaluation.value)
        if not math.isfinite(value):
            return record
        record["value"] = value
        if first:
            assert evaluation.features is not None      # asked for with keep_features
            replicates = bootstrap_values(evaluation.features, validating.score, self.indices)
            record["replicates"] = [float(v) for v in replicates]
            if evaluation.images is not None:
                self.drawn[trial.number] = evaluation.images
        return record

    def run(self, checkpoint: int, total: int) -> RaceState:
        """Race at ``checkpoint`` finished trials of ``total``, and store the state after it."""
        baseline, ranked = candidates_of(self.study.get_trials(deepcopy=False))
        state = race(self.state(), ranked, checkpoint=checkpoint,
                     number=race_number(checkpoint, total), top_k=self.settings.top_k,
                     max_blocks=self.settings.max_blocks,
                     key=lambda t: canonical_schedule(t.params), measure=self.measure,
                     baseline=baseline)
        stored = {"identity": self.identity, **state.to_dict()}
        self.study.set_user_attr(RACE_ATTR, stored)
        self.attrs[RACE_ATTR] = stored
        return state

    def plan(self, state: RaceState) -> dict[str, Any] | None:
        """The validation plan of a finished race: every raced candidate's block-0 record,
        the chosen one's, and the images behind the choice."""
        _, ranked = candidates_of(self.study.get_trials(deepcopy=False))
        by_key = {canonical_schedule(t.params): t for t in ranked}
        raced = [by_key[k] for k in state.raced if k in by_key]
        if state.incumbent is None or state.incumbent not in by_key:
            return None
        return {
            "num_samples": self.blocks.size,
            "seed": self.blocks.first_seed,
            "resamples": self.settings.resamples,
            "level": float(self.settings.level),
            "candidates": [self.name(t, 0) for t in raced],
            "chosen": self.name(by_key[state.incumbent], 0),
            "blocks": state.blocks,
            "race_images": self.blocks.size * sum(self._blocks_of(t) for t in raced),
        }

    def _blocks_of(self, trial: FrozenTrial) -> int:
        """Blocks measured of a raced candidate (always 0, 1, … in turn)."""
        count = 0
        while self.name(trial, count) in self.attrs:
            count += 1
        return count


def race_if_due(
    storage: Any,
    study: optuna.Study,
    config: StudyConfig,
    objective: Objective,
    settings: ValidationSettings,
    *,
    total: int,
    worker: int = 0,
    emit: EventCallback | None = None,
) -> None:
    """Race now if the study passed a checkpoint below its total that was not raced yet.

    Under the study's race lock (not its trial lock, so that other workers keep asking
    trials meanwhile); a worker that finds the checkpoint raced by another does nothing.
    """
    if not settings.enabled:
        return
    finished = sum(is_finished(t) for t in study.get_trials(deepcopy=False))
    due = [c for c in race_checkpoints(total)[:-1] if c <= finished]
    if not due:
        return
    with storage.lock(f"race:{study.study_name}"):
        running = _Race(study, config, objective, settings, worker=worker,
                        emit=emit or (lambda _event: None))
        if due[-1] not in running.state().checkpoints:
            running.run(due[-1], total)


def validate_study(
    storage: Any,
    study: optuna.Study,
    config: StudyConfig,
    objective: Objective,
    settings: ValidationSettings,
    *,
    total: int | None = None,           # the study's trial total; default: config.trials
    worker: int = 0,
    emit: EventCallback | None = None,
) -> ValidationResult | None:
    """Race ``study`` at its total (unless that race is stored) and write its validation plan.

    Under the study's race lock, so that several workers never measure a candidate twice: the
    first races, the others wait and find every result stored. Then each raced candidate,
    ρ = 1 and each known point get a 4 × 4 sample grid on the first validation seeds, stored
    as an artifact of its trial (``settings.artifacts``; see :func:`store_grids`) unless it has
    one. Returns the result, or None when the study has no complete trial.
    """
    emit = emit or (lambda _event: None)
    total = config.trials if total is None else total
    with storage.lock(f"race:{study.study_name}"):
        running = _Race(study, config, objective, settings, worker=worker, emit=emit)
        state = running.state()
        if total not in state.checkpoints:
            state = running.run(total, total)
        plan = running.plan(state)
        if plan is None:
            return None
        if running.attrs.get(VALIDATION_ATTR) != plan:
            study.set_user_attr(VALIDATION_ATTR, plan)
        # Grids need the model the objective samples (a ProxyObjective's); one built
        # otherwise has none to draw. Also on a rerun, which stores what an earlier could not.
        model = getattr(objective, "model", None)
        if settings.grids and model is not None:
            # The first validation seeds: fresh for every trial, the same for every candidate.
            numbers = [int(running.attrs[name]["trial"]) for name in plan["candidates"]]
            store_grids(storage, study, config, model, numbers, seed=running.blocks.first_seed,
                        artifacts=settings.artifacts, emit=emit, drawn=running.drawn)
    return validation_result(study)
