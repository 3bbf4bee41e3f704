"""The search: the only package that asks Optuna for trials and tells their outcomes.

``search(model, SearchConfig(nfe=9))`` plans a study per budget, creates or resumes it in
the database, queues the baseline ρ = 1, the paper's schedules and other budgets' validated
bests once, and runs trials (:class:`StudyRun`, in one or more workers) until the study has
its total, racing its best schedules on fresh seed blocks as it goes (``race``). Progress
goes to an :data:`EventCallback` as picklable events. What a study is lives in
``skiptune.tuner.study``; reading results back, in ``skiptune.tuner.results``.
"""

from __future__ import annotations

from skiptune.tuner.search._events import (
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
from skiptune.tuner.search._objective import Objective
from skiptune.tuner.search._racing import RaceState, SeedBlocks, race, race_checkpoints
from skiptune.tuner.search._run import StudyRun, prepare_study, run_study
from skiptune.tuner.search._service import plan_study, resolve_objective, search
from skiptune.tuner.search._space import PAPER_SCHEDULES, queued_schedules

__all__ = [
    "PAPER_SCHEDULES",
    "BatchSizeReduced",
    "CandidateValidated",
    "EventCallback",
    "Note",
    "Objective",
    "RaceState",
    "ReferenceSampled",
    "RungDone",
    "SearchEvent",
    "SeedBlocks",
    "StudyDone",
    "StudyRun",
    "StudyStarted",
    "TrialFinished",
    "TrialStarted",
    "Waiting",
    "WorkerLost",
    "plan_study",
    "prepare_study",
    "queued_schedules",
    "race",
    "race_checkpoints",
    "resolve_objective",
    "run_study",
    "search",
]
