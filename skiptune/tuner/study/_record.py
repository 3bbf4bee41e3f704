"""What skiptune stores in an Optuna study, and how to read it back.

Every attribute name skiptune writes (study and trial user attributes), trial roles, what
counts as finished, the trial parameters ↔ schedule mapping, and the validation record. The
trial loop (``tuner/search``) writes these and the result readers (``tuner/results``) read
them; both import them from here, so a stored name is spelled once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from skiptune.freeu import FreeU
from skiptune.objectives import paired_gain_interval
from skiptune.schedule import TuningSchedule
from skiptune.steps import StepGrid

__all__ = [
    "CONFIG_ATTR",
    "FAILURE_ATTR",
    "FAILURE_KIND_ATTR",
    "GRID_ATTR",
    "GRID_PREFIX",
    "NUM_SAMPLES_ATTR",
    "NUM_SKIPS_ATTR",
    "RACE_ATTR",
    "ROLE_ATTR",
    "RUNG_VALUES_ATTR",
    "SECONDS_ATTRS",
    "SEEDED_ATTR",
    "SKIP_LAYOUT_ATTR",
    "TOTAL_ATTR",
    "VALIDATION_ATTR",
    "WARM_ATTR",
    "ValidatedCandidate",
    "ValidationResult",
    "candidate_attr",
    "canonical_schedule",
    "grid_artifacts",
    "is_finished",
    "role_of",
    "schedule_from_params",
    "validation_result",
    "value_of",
]

CONFIG_ATTR = "skiptune_config"        # study user attribute: StudyConfig.to_dict()
TOTAL_ATTR = "skiptune_trials_total"   # study user attribute: the latest requested total
SEEDED_ATTR = "skiptune_seeded"        # study user attribute: baselines were queued
WARM_ATTR = "skiptune_warm_started"    # study user attribute: other budgets' bests queued
FAILURE_KIND_ATTR = "failure_kind"     # trial user attribute: "non-finite", "interrupted", "error"
ROLE_ATTR = "skiptune_role"            # trial user attribute: "baseline", "paper", "freeu",
                                       # "warm" (another budget's validated best)
FAILURE_ATTR = "failure"               # trial user attribute: why it failed, one line
NUM_SAMPLES_ATTR = "num_samples"       # trial user attribute: N of its last rung
RUNG_VALUES_ATTR = "rung_values"       # trial user attribute: [[N, value], ...] per rung
SECONDS_ATTRS = ("seconds_sampling", "seconds_features", "seconds_total")   # trial timings
NUM_SKIPS_ATTR = "skiptune_num_skips"  # study user attribute: the model's skip count
SKIP_LAYOUT_ATTR = "skiptune_skip_layout"  # study user attribute: the skip sites' names,
                                       # bottom → top (so export needs no model)
GRID_ATTR = "skiptune_grid"            # study user attribute: {"seed", "num_samples"} of the
                                       # sample grids stored as trial artifacts
GRID_PREFIX = "skiptune-grid"          # file name of a trial's grid artifact: <prefix>-<n>.png


def is_finished(trial: FrozenTrial) -> bool:
    """Counts toward the study's total: complete, pruned, or failed with non-finite samples.

    A non-finite failure is a measurement (this ρ makes the network diverge); a trial that
    failed because its process died or was interrupted is not, and is run again.
    """
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    kind = trial.user_attrs.get(FAILURE_KIND_ATTR)
    return trial.state == TrialState.FAIL and kind == "non-finite"


def role_of(trial: FrozenTrial | optuna.Trial) -> str:
    """Why the trial ran: ``baseline`` (ρ = 1), a known point (``paper``: Ma et al.'s
    schedules; ``freeu``: the model family's FreeU values) or ``search``."""
    return str(trial.user_attrs.get(ROLE_ATTR, "search"))


def value_of(trial: FrozenTrial) -> float:
    """A complete trial's objective value (Optuna types it optional: other states have none)."""
    if trial.value is None:
        raise ValueError(f"trial {trial.number} ({trial.state.name}) has no value")
    return float(trial.value)


def grid_artifacts(trial: FrozenTrial) -> list[str]:
    """Ids of the trial's sample-grid artifacts (Optuna's ``artifacts:<id>`` system
    attributes whose file name starts with ``GRID_PREFIX``), in id order (a rerun that found
    a grid's file deleted adds another: readers take the one whose file is there)."""
    found = []
    for key, value in trial.system_attrs.items():
        if not key.startswith("artifacts:"):
            continue
        try:
            meta = json.loads(value)
        except (TypeError, ValueError):
            continue                        # another tool's attribute: not ours to read
        if isinstance(meta, dict) and str(meta.get("filename", "")).startswith(GRID_PREFIX):
            found.append(str(meta["artifact_id"]))
    return sorted(found)


# -- trial parameters ↔ schedule ---------------------------------------------------------

def _window_of(params: dict[str, Any]) -> dict[str, float]:
    if "sigma_lo" not in params or "sigma_hi" not in params:
        return {}
    ends = sorted((float(params["sigma_lo"]), float(params["sigma_hi"])))
    return {"sigma_lo": ends[0], "sigma_hi": ends[1]} if ends[0] < ends[1] else {}


def schedule_from_params(params: dict[str, Any]) -> TuningSchedule:
    """The schedule a trial's parameters stand for (ρ = 1 when only FreeU was searched)."""
    freeu = None
    if "b1" in params:
        freeu = FreeU(**{k: float(params[k]) for k in ("b1", "b2", "s1", "s2")})
    return TuningSchedule(
        rho_bottom=float(params.get("rho_bottom", 1.0)),
        rho_top=float(params.get("rho_top", 1.0)),
        shape=str(params.get("shape", "linear")),
        gamma=float(params.get("gamma", 1.0)),
        freeu=freeu,
        steps=_steps_of(params),
        **_window_of(params),
    )


def _steps_of(params: dict[str, Any]) -> StepGrid | None:
    if "steps_exponent" not in params:
        return None                       # the sampler's own grid: ρ-only params as before
    return StepGrid(schedule_exponent=float(params["steps_exponent"]),    # names: _space.py
                    sigma_min=float(params["steps_sigma_min"]),
                    sigma_max=float(params["steps_sigma_max"]))


# -- the validation record ----------------------------------------------------------------

VALIDATION_ATTR = "skiptune_validation"        # study user attribute: the finished validation
RACE_ATTR = "skiptune_race"                    # study user attribute: the races' state so far
_CANDIDATE_PREFIX = "skiptune_validated:"      # study user attribute per validated candidate


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
    blocks: int = 1                 # seed blocks of num_samples the chosen one won on
    race_images: int = 0            # images the races measured, every candidate and block

    @property
    def deciding_images(self) -> int:
        """The fresh-seed images behind the choice: the chosen schedule's blocks."""
        return self.blocks * self.num_samples

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
            "blocks": self.blocks,
            "deciding_images": self.deciding_images,
            "race_images": self.race_images,
            "candidates": [
                {"trial": c.trial, "role": c.role, "search_value": c.search_value,
                 "value": c.value}
                for c in self.candidates
            ],
        }


def canonical_schedule(params: dict[str, Any]) -> str:
    """The schedule of ``params`` as canonical JSON: equal for trials that ran the same one."""
    return json.dumps(schedule_from_params(params).to_dict(), sort_keys=True)


def candidate_attr(params: dict[str, Any], num_samples: int, seed: int, resamples: int) -> str:
    """The study user attribute holding one candidate's validation at (N, seed, resamples)."""
    text = f"{canonical_schedule(params)}\n{num_samples}\n{seed}\n{resamples}"
    return _CANDIDATE_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]


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
    by_name = dict(zip(plan["candidates"], candidates, strict=True))
    # The race's incumbent; a plan written before races existed chose the lowest value.
    chosen = by_name.get(plan.get("chosen", "")) or min(
        measured, key=lambda c: (c.value, c.search_value, c.trial))
    if chosen.value is None:
        return None
    by_trial = {int(s["trial"]): s for s in stored}
    baseline = next((c for c in candidates if c.role == "baseline"), None)
    gain = low = high = None
    if baseline is not None and baseline.value:
        gain = 1.0 - chosen.value / baseline.value
        mine, theirs = by_trial[chosen.trial]["replicates"], by_trial[baseline.trial]["replicates"]
        if mine is not None and theirs is not None:
            low, high = paired_gain_interval(np.array(mine), np.array(theirs),
                                             level=float(plan["level"]))
    return ValidationResult(
        num_samples=int(plan["num_samples"]), seed=int(plan["seed"]),
        level=float(plan["level"]), candidates=candidates, chosen=chosen, baseline=baseline,
        gain=gain, gain_low=low, gain_high=high, blocks=int(plan.get("blocks", 1)),
        race_images=int(plan.get("race_images", len(stored) * int(plan["num_samples"]))),
    )

