"""The search service: resumable Optuna studies of the skip schedule, one per step budget.

``search(model, SearchConfig(nfe=9))`` plans a study per budget, creates or resumes it in the
database, queues the baseline ρ = 1 and the paper's schedules once, and runs trials until
the study has its total; ``best_schedule``, ``export_schedule`` (its file format lives in
``skiptune.exported``), ``front_report`` and ``list_studies`` read the results back.
``pareto_front`` and ``speed_claims`` are the pure maths behind the front.
"""

from __future__ import annotations

from skiptune.tuner._config import (
    OPTIMIZERS,
    SearchConfig,
    SearchSpace,
    StudyConfig,
    ValidationSettings,
)
from skiptune.tuner._events import (
    BatchSizeReduced,
    CandidateValidated,
    EventCallback,
    Note,
    ReferenceSampled,
    RungDone,
    SearchEvent,
    StudyDone,
    StudyStarted,
    TrialFinished,
    TrialStarted,
    Waiting,
    WorkerLost,
)
from skiptune.tuner._export import export_schedule
from skiptune.tuner._identity import default_group, study_name
from skiptune.tuner._output import plot_front, quiet_optuna
from skiptune.tuner._pareto import (
    FrontPoint,
    SpeedClaim,
    describe_claim,
    pareto_front,
    pareto_mask,
    speed_claims,
)
from skiptune.tuner._reading import FrontReport, best_schedule, front_report, list_studies
from skiptune.tuner._schema import role_of
from skiptune.tuner._search import search
from skiptune.tuner._space import PAPER_SCHEDULES, queued_schedules, schedule_from_params
from skiptune.tuner._summary import StudySummary
from skiptune.tuner._validation import ValidationResult, validation_result

__all__ = [
    "OPTIMIZERS",
    "PAPER_SCHEDULES",
    "BatchSizeReduced",
    "CandidateValidated",
    "EventCallback",
    "FrontPoint",
    "FrontReport",
    "Note",
    "ReferenceSampled",
    "RungDone",
    "SearchConfig",
    "SearchEvent",
    "SearchSpace",
    "SpeedClaim",
    "StudyConfig",
    "StudyDone",
    "StudyStarted",
    "StudySummary",
    "TrialFinished",
    "TrialStarted",
    "ValidationResult",
    "ValidationSettings",
    "Waiting",
    "WorkerLost",
    "best_schedule",
    "default_group",
    "describe_claim",
    "export_schedule",
    "front_report",
    "list_studies",
    "pareto_front",
    "pareto_mask",
    "plot_front",
    "queued_schedules",
    "quiet_optuna",
    "role_of",
    "schedule_from_params",
    "search",
    "speed_claims",
    "study_name",
    "validation_result",
]
