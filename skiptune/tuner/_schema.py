"""What skiptune stores in an Optuna study: attribute names, trial roles, what counts as finished.

The trial loop writes these and the result readers read them; both import them from here.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "CONFIG_ATTR",
    "FAILURE_KIND_ATTR",
    "ROLE_ATTR",
    "SEEDED_ATTR",
    "TOTAL_ATTR",
    "WARM_ATTR",
    "is_finished",
    "role_of",
    "value_of",
]

CONFIG_ATTR = "skiptune_config"        # study user attribute: StudyConfig.to_dict()
TOTAL_ATTR = "skiptune_trials_total"   # study user attribute: the latest requested total
SEEDED_ATTR = "skiptune_seeded"        # study user attribute: baselines were queued
WARM_ATTR = "skiptune_warm_started"    # study user attribute: other budgets' bests queued
FAILURE_KIND_ATTR = "failure_kind"     # trial user attribute: "non-finite", "interrupted", "error"
ROLE_ATTR = "skiptune_role"            # trial user attribute: "baseline", "paper", "freeu",
                                       # "warm" (another budget's validated best)


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
